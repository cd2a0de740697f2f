// Initiates the three-member replica set `rs0` of deploy/compose.cluster.yml once
// (mongosh --host mongo-1 --file ...), then waits until it has a writable primary.
// Idempotent: on a set already initiated it only waits. Run by the one-shot service
// `mongo-init`; the platform services start once it exited successfully.
const members = ["mongo-1:27017", "mongo-2:27017", "mongo-3:27017"];
try {
  rs.status();
} catch (error) {
  // NotYetInitialized (code 94): the first start of the cluster.
  if (error.code !== 94) throw error;
  rs.initiate({ _id: "rs0", members: members.map((host, i) => ({ _id: i, host })) });
}
const deadline = Date.now() + 120000;
while (!db.hello().primary) {
  if (Date.now() > deadline) throw new Error("no primary elected within 120 s");
  sleep(1000);
}
print(`replica set rs0: primary ${db.hello().primary}`);
