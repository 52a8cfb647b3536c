// Shoal console: keeps a live page's fragments up to date from /live/<page> (server-sent
// events). Each event carries {"<element id>": "<html rendered and escaped by the server>"}.
(() => {
  'use strict';
  const page = document.body.dataset.live;
  const conn = document.getElementById('conn');
  const show = (text, cls) => {
    if (conn) {
      conn.textContent = text;
      conn.className = 'conn ' + cls;
    }
  };
  if (!page) {
    show('', 'off');
    return;
  }
  const source = new EventSource('/live/' + encodeURIComponent(page));
  source.addEventListener('open', () => show('live', 'live'));
  source.addEventListener('error', () => show('reconnecting', 'lost'));
  source.addEventListener('fragments', (event) => {
    let parts;
    try {
      parts = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    for (const [id, html] of Object.entries(parts)) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    }
    document.body.dataset.updated = String(Date.now());
    show('live', 'live');
  });
})();
