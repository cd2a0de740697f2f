// graphql-http's GraphQL-over-HTTP server audits against one endpoint.
//
//   node audit.mjs http://127.0.0.1:8000/graphql
//
// Prints one JSON object: {"results": [{"id", "name", "status", "reason"?, "body"?}, ...]}.
// status is ok, notice, warn or error; a failed audit carries the reason and the
// response's status, content type and (cut) body. Exits 0 whatever the results: the
// caller judges them (tests/system/browser/test_graphql_over_http.py).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}

async function describe(response) {
  if (!response) return {};
  let body = '';
  try {
    body = await response.clone().text();
  } catch {
    // The audit read it already; the reason says enough.
  }
  return {
    httpStatus: response.status,
    contentType: response.headers.get('content-type'),
    body: body.slice(0, 500),
  };
}

const results = [];
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  const entry = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    Object.assign(entry, await describe(result.response));
  }
  results.push(entry);
}
process.stdout.write(JSON.stringify({ results }) + '\n');
