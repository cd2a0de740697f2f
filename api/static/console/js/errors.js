// The API's contract codes (graph/errors.py), in words a person understands.
import { h } from './ui.js';

const WORDS = {
  UNAUTHENTICATED: 'You are not signed in, or your session has ended. Please sign in again.',
  FORBIDDEN: 'Your account is not allowed to do this (it needs the administrator role).',
  NOT_FOUND: 'That does not exist, or it is not yours.',
  BAD_USER_INPUT: 'Something you entered is not accepted.',
  CONFLICT: 'That clashes with what is already there.',
  RATE_LIMITED: 'Too many attempts in a short time. Please wait a moment and try again.',
  QUERY_TOO_COMPLEX: 'That request is too large for the server. Ask for less at once.',
  INTERNAL: 'The server had a problem. Please try again; if it persists, tell the operator.',
  NETWORK: 'The API cannot be reached. Check the connection and try again.',
};

// Codes whose message from the API says what to fix: shown too.
const DETAILED = new Set(['BAD_USER_INPUT', 'CONFLICT', 'RATE_LIMITED', 'NOT_FOUND']);

export class ApiError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code in WORDS ? code : 'INTERNAL';
  }
}

// words: a page's own words for some codes (the sign-in page's UNAUTHENTICATED).
export function describe(error, words = {}) {
  const code = error instanceof ApiError ? error.code : 'INTERNAL';
  const detail = error instanceof ApiError && DETAILED.has(code) ? error.message : '';
  return { code, words: words[code] || WORDS[code], detail };
}

// Puts one error into a message area (ui.messageArea) as words, with its code.
export function showError(area, error, overrides = {}) {
  const { code, words, detail } = describe(error, overrides);
  area.replaceChildren(
    h(
      'p',
      { class: 'error', dataset: { code } },
      h('strong', {}, words),
      detail && detail !== words ? ` ${detail}` : '',
      h('span', { class: 'code' }, ` (${code})`),
    ),
  );
  if (!(error instanceof ApiError)) console.warn(error);
}

export function showInfo(area, text) {
  area.replaceChildren(h('p', { class: 'info' }, text));
}
