// The live socket: graphql-transport-ws to the API's /graphql, one WebSocket for every
// subscription of the page. It reconnects on its own (backoff 0.5 s doubling to 15 s,
// with jitter) and subscribes again to everything still wanted; a close for an expired
// token (4401) refreshes the token first. A ping every 15 s finds a dead connection.
import { auth, refresh, GRAPHQL_URL } from './api.js';
import { ApiError } from './errors.js';

const PROTOCOL = 'graphql-transport-ws';
const PING_EVERY_MS = 15_000;
const PONG_WITHIN_MS = 10_000;
const ACK_WITHIN_MS = 10_000;
const TOKEN_CLOSE_CODES = new Set([4401, 4403]);

function socketUrl() {
  const url = new URL(GRAPHQL_URL);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

class Live {
  constructor() {
    this.subscriptions = new Map();
    this.nextId = 1;
    this.socket = null;
    this.state = 'offline'; // offline | connecting | online
    this.attempt = 0;
    this.listeners = new Set();
    this.timers = {};
    this.wanted = false;
  }

  onState(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  // Start (signed in) or stop (signed out) the socket.
  start() {
    this.wanted = true;
    if (!this.socket) this.connect();
  }

  stop() {
    this.wanted = false;
    this.subscriptions.clear();
    clearTimeout(this.timers.reconnect);
    if (this.socket) this.socket.close(1000, 'signed out');
    this.socket = null;
    this.setState('offline');
  }

  // next(data) for every result; error(ApiError) when the server refuses it.
  subscribe(query, variables, next, error = () => {}) {
    const id = String(this.nextId++);
    const subscription = { query, variables, next, error };
    this.subscriptions.set(id, subscription);
    if (this.state === 'online') this.send({ id, type: 'subscribe', payload: { query, variables } });
    return () => {
      if (!this.subscriptions.delete(id)) return;
      if (this.state === 'online') this.send({ id, type: 'complete' });
    };
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  connect() {
    if (!this.wanted || !auth.token) return;
    this.setState('connecting');
    const socket = new WebSocket(socketUrl(), PROTOCOL);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.send({ type: 'connection_init', payload: { Authorization: `Bearer ${auth.token}` } });
      this.timers.ack = setTimeout(() => socket.close(4408, 'no ack'), ACK_WITHIN_MS);
    });
    socket.addEventListener('message', (event) => this.receive(socket, event));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  receive(socket, event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    const subscription = message.id ? this.subscriptions.get(message.id) : null;
    switch (message.type) {
      case 'connection_ack':
        clearTimeout(this.timers.ack);
        this.attempt = 0;
        this.setState('online');
        for (const [id, { query, variables }] of this.subscriptions) {
          this.send({ id, type: 'subscribe', payload: { query, variables } });
        }
        this.keepAlive(socket);
        break;
      case 'next':
        if (subscription) {
          const { data, errors } = message.payload || {};
          if (errors && errors.length) {
            subscription.error(new ApiError(errors[0].extensions?.code || 'INTERNAL', errors[0].message));
          } else if (data) {
            subscription.next(data);
          }
        }
        break;
      case 'error':
        if (subscription) {
          const first = (message.payload || [])[0] || {};
          this.subscriptions.delete(message.id);
          subscription.error(new ApiError(first.extensions?.code || 'INTERNAL', first.message));
        }
        break;
      case 'complete':
        // The server ended it (e.g. a finished rollout): nothing to subscribe again.
        this.subscriptions.delete(message.id);
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'pong':
        clearTimeout(this.timers.pong);
        break;
      default:
        break;
    }
  }

  keepAlive(socket) {
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => {
      if (socket !== this.socket) return;
      this.send({ type: 'ping' });
      clearTimeout(this.timers.pong);
      this.timers.pong = setTimeout(() => socket.close(4499, 'no pong'), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  async closed(socket, event) {
    if (socket !== this.socket) return;
    clearTimeout(this.timers.ack);
    clearTimeout(this.timers.pong);
    clearInterval(this.timers.ping);
    this.socket = null;
    if (!this.wanted) {
      this.setState('offline');
      return;
    }
    this.setState('connecting');
    if (TOKEN_CLOSE_CODES.has(event.code)) {
      try {
        await refresh();
      } catch {
        // Signed out (main.js stops the socket), or the API is away: retried below.
      }
    }
    const delay = Math.min(15_000, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    if (this.attempt > 1) this.setState('offline');
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => this.connect(), delay);
  }
}

export const live = new Live();
