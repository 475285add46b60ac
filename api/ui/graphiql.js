// Starts GraphiQL (vendored React, ReactDOM and GraphiQL are loaded before this, in order).
// Send `{"Authorization": "Bearer <token>"}` in the Headers tab; the console's token is not shared.
(function start() {
  const root = document.getElementById('graphiql');
  const fetcher = window.GraphiQL.createFetcher({ url: '/graphql' });
  window.ReactDOM.createRoot(root).render(
    window.React.createElement(window.GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
  );
})();
