// mamori settings page: reads the subscriber's token from the URL fragment (#token=JWT),
// keeps it in sessionStorage, and talks to /v1/subscribers/{id}/... with it.
// Message data is only ever inserted with textContent.
(function () {
  'use strict';
  var T = JSON.parse(document.body.dataset.i18n);
  var lang = document.body.dataset.lang;
  var statusEl = document.getElementById('status');
  var auth = readToken();
  var base = auth.sub ? '/v1/subscribers/' + encodeURIComponent(auth.sub) : null;

  function readToken() {
    var h = new URLSearchParams(location.hash.slice(1));
    if (h.get('token')) {
      sessionStorage.setItem('mamori.token', h.get('token'));
      if (h.get('subscriber')) sessionStorage.setItem('mamori.sub', h.get('subscriber'));
      else sessionStorage.removeItem('mamori.sub');
      history.replaceState(null, '', location.pathname + location.search);
    }
    var tok = sessionStorage.getItem('mamori.token');
    var sub = sessionStorage.getItem('mamori.sub');
    if (tok && !sub) {
      try {
        var p = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
        sub = JSON.parse(atob(p)).sub;
      } catch (e) { sub = null; }
    }
    return { tok: tok, sub: sub };
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text || '';
  }

  function api(method, path, body) {
    var opts = { method: method, headers: { 'Authorization': 'Bearer ' + auth.tok } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return fetch(base + path, opts).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    });
  }

  function fields() { return document.querySelectorAll('[data-field]'); }

  function showPolicy(p) {
    fields().forEach(function (el) {
      var f = el.dataset.field;
      if (el.type === 'checkbox') el.checked = !!p[f]; else el.value = p[f];
      el.disabled = false;
    });
    document.getElementById('f-allow').value = (p.allow || []).join('\n');
    document.getElementById('f-block').value = (p.block || []).join('\n');
    ['f-allow', 'f-block', 'save-lists'].forEach(function (id) {
      document.getElementById(id).disabled = false;
    });
    document.body.dataset.policyVersion = p.version;
  }

  function patch(change) {
    setStatus('saving', '');
    return api('PATCH', '/policy', change).then(function (p) {
      showPolicy(p);
      setStatus('saved', T.saved);
    }).catch(function () { setStatus('error', T.error); return load(); });
  }

  function lines(id) {
    return document.getElementById(id).value.split('\n')
      .map(function (s) { return s.trim(); }).filter(function (s) { return s; });
  }

  function when(ts) {
    return new Date(ts * 1000).toLocaleString(lang === 'ja' ? 'ja-JP' : 'en-GB');
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showQuarantine(q) {
    var ul = document.getElementById('quarantine-list');
    ul.replaceChildren();
    if (!q.items.length) { ul.appendChild(el('li', 'empty', T.empty)); return; }
    q.items.forEach(function (m) {
      var li = el('li');
      li.dataset.messageId = m.message_id;
      li.appendChild(el('div', 'meta', T.from + ': ' + m.sender + ' \u00b7 ' + when(m.received_at)));
      li.appendChild(el('div', 'preview', m.preview));
      li.appendChild(el('div', 'meta', T.why));
      var reasons = el('ul', 'reasons');
      m.reasons.forEach(function (r) {
        var text = T.reasons[r.symbol] || r.description || r.symbol;
        if (r.options && r.options.length) text += ' (' + r.options.join(', ') + ')';
        reasons.appendChild(el('li', null, text));
      });
      li.appendChild(reasons);
      if (m.status === 'released') {
        li.appendChild(el('span', 'released', T.released));
      } else {
        var b = el('button', 'release', T.release);
        b.type = 'button';
        b.addEventListener('click', function () {
          b.disabled = true;
          api('POST', '/quarantine/' + encodeURIComponent(m.message_id) + '/release')
            .then(function () { setStatus('saved', T.released); return loadQuarantine(); })
            .catch(function () { b.disabled = false; setStatus('error', T.error); });
        });
        li.appendChild(b);
      }
      ul.appendChild(li);
    });
  }

  function loadQuarantine() { return api('GET', '/quarantine?limit=50').then(showQuarantine); }

  function load() {
    return api('GET', '/policy').then(showPolicy).then(loadQuarantine).then(function () {
      if (statusEl.dataset.state === 'loading') setStatus('ready', '');
    }).catch(function () { setStatus('error', T.load_error); });
  }

  fields().forEach(function (f) {
    f.addEventListener('change', function () {
      var change = {};
      change[f.dataset.field] = f.type === 'checkbox' ? f.checked : f.value;
      patch(change);
    });
  });
  document.getElementById('save-lists').addEventListener('click', function () {
    patch({ allow: lines('f-allow'), block: lines('f-block') });
  });
  // keep the token when switching language (it lives in sessionStorage, not the URL)
  if (!auth.tok || !base) { setStatus('error', T.signin); return; }
  load();
}());
