// GraphiQL for this API (api/graphiql.py serves the page; docs/graphiql.md).
//
// A file of its own because the page runs no inline script (CSP script-src 'self').
// It points GraphiQL at the page's own URL: queries and mutations are POSTed there,
// subscriptions go over graphql-transport-ws to the same URL on ws:/wss: (the
// graphql-ws client inside graphiql.min.js). The headers in the Headers pane go with
// every HTTP request and, for a subscription, in connection_init's payload, where the
// server reads the token: {"Authorization": "Bearer <accessToken>"}.
(function () {
  'use strict';

  var DEFAULT_QUERY = [
    '# GraphiQL for the IoT platform API.',
    '#',
    '# Most operations need an access token:',
    '# 1. Run Login, with Variables',
    '#    {"email": "...", "password": "..."}',
    '# 2. Put its accessToken in Headers:',
    '#    {"Authorization": "Bearer <accessToken>"}',
    '#',
    '# The same header authenticates subscriptions',
    '# (over a WebSocket). Ctrl-Enter runs the',
    '# operation under the cursor.',
    '',
    'mutation Login($email: String!, $password: String!) {',
    '  login(input: {email: $email, password: $password}) {',
    '    accessToken',
    '    expiresIn',
    '  }',
    '}',
    '',
    'query Me {',
    '  me {',
    '    email',
    '    role',
    '  }',
    '}',
    '',
    'subscription ReadingAdded($deviceId: ID) {',
    '  readingAdded(deviceId: $deviceId) {',
    '    deviceId',
    '    timestamp',
    '    values {',
    '      metric',
    '      value',
    '      unit',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');

  function endpoints(location) {
    var http = location.origin + location.pathname;
    var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + location.pathname;
    return { http: http, ws: ws };
  }

  var urls = endpoints(window.location);
  var fetcher = GraphiQL.createFetcher({
    url: urls.http,
    subscriptionUrl: urls.ws,
  });

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      defaultQuery: DEFAULT_QUERY,
      defaultEditorToolsVisibility: 'headers',
      isHeadersEditorEnabled: true,
      // A bearer token is a credential: kept in this tab's memory, not in localStorage.
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    })
  );
})();
