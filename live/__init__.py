"""Live delivery: one path from a device's reading to every subscriber allowed to see it.

    worker   publisher.LivePublisher: a bounded outbox, PUBLISHed through resp.PublishPipe
               on the event's device, owner and all-devices channels (core.events)
    Redis    pub/sub
    API      redis_bus.RedisBus: one connection and one reader per process, replies
               parsed from whole chunks (PushReplies)
             bus.Fanout: each channel's local subscribers, each with a bounded buffer
             services.live.watch: decode, then Feed.allows for this subscriber (authorise)
             stream.live_stream: token expiry, metrics, slow subscribers closed (1013)
             sharing.SharedResults: a selection of @shareable types executed and
               encoded once per event, for every subscriber that selected it
             sharing.SocketWriter: the encoded result, in the operation's envelope, on
               the subscriber's WebSocket (anything else: strawberry's own path)

The guarantee: an event reaches a subscriber only after Feed.allows passed it for that
subscriber, and only while the token it authenticated with is valid. Delivery is
pub/sub's: at most once, in publish order per channel, only while subscribed (what is
published while Redis is away is lost; the subscriptions resume). Nothing waits on a
slow party: the worker's outbox and each subscriber's buffer are bounded, and what
overflows is dropped and counted (a subscriber that falls behind is closed). A result
is shared only between subscribers of the same selection over types built from the
event alone.

delivery.LiveDelivery is the process's state for all of this, opened in the API's
lifespan; compat holds every use of another project's internals.
"""
