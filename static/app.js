// opsdash client: keeps the server-rendered pages live over /ws (protocol v1).
// One file, no dependencies, no build step. How it works and why: views/doc.go.
//
// The page declares what it shows in markup, so this script is generic:
//   body[data-subscribe]            patterns to subscribe to
//   body[data-max-hz]               values a second per topic the page asks for (default 1)
//   [data-topic][data-interval]     a card or row fed by one topic (stale after 3 intervals, or 3 of 1/max_hz)
//   [data-f=field]                  text = fmt(field, data[field])   (data-null: text for null)
//   meter[data-m=field]             value = data[field]
//   [data-list=field][data-key=k]   one child per data[field][i], keyed by item[k], from its <template>
//                                   (data-sort=f: largest item[f] first)
//   [data-a=field]                  data-v = data[field] ("" for null), for the stylesheet
//   a[data-href="/x/{field}"]       href with each {field} filled in
//   svg[data-chart]                 time series of data-series over the last data-window seconds
(function () {
  'use strict';

  // ---- formatting: mirrors views/format.go; both are tested against views/testdata/format_cases.json.

  var IEC = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  var SI = ['', 'k', 'M', 'G', 'T'];

  // fixed rounds half up to d decimals, with the same operations as Go's fixed.
  function fixed(v, d) {
    var p = Math.pow(10, d);
    var r = Math.floor(v * p + 0.5) / p;
    return (r === 0 ? 0 : r).toFixed(d);
  }
  function decimals(v) { return Math.abs(v) < 99.95 ? 1 : 0; }
  function ends(s, suffix) { return s.length >= suffix.length && s.slice(-suffix.length) === suffix; }

  function fmtBytes(v) {
    if (Math.abs(v) < 1023.5) return fixed(v, 0) + ' B';
    var i = 0;
    while (Math.abs(v) >= 1023.5 && i < IEC.length - 1) { v /= 1024; i++; }
    return fixed(v, decimals(v)) + ' ' + IEC[i];
  }
  function si(v) {
    var i = 0;
    while (Math.abs(v) >= 999.5 && i < SI.length - 1) { v /= 1000; i++; }
    return fixed(v, decimals(v)) + SI[i];
  }
  function fmtDuration(sec) {
    var s = Math.floor(Math.max(sec, 0));
    if (s < 60) return s + 's';
    if (s < 3600) return twoUnits(Math.floor(s / 60), 'm', s % 60, 's');
    if (s < 86400) return twoUnits(Math.floor(s / 3600), 'h', Math.floor(s % 3600 / 60), 'm');
    return twoUnits(Math.floor(s / 86400), 'd', Math.floor(s % 86400 / 3600), 'h');
  }
  function twoUnits(a, ua, b, ub) { return b === 0 ? a + ua : a + ua + ' ' + b + ub; }
  // fmtMillis: "250 ms", "1.5s", then as fmtDuration.
  function fmtMillis(ms) {
    if (Math.abs(ms) < 1000) return fixed(ms, 0) + ' ms';
    if (ms < 60000) return fixed(ms / 1000, 1).replace(/\.0$/, '') + 's';
    return fmtDuration(ms / 1000);
  }
  // fmtInterval is a topic's collection interval; 0 for published topics.
  function fmtInterval(ms) { return ms > 0 ? fmtMillis(ms) : 'on publish'; }
  function pad(n) { return n < 10 ? '0' + n : '' + n; }
  function fmtTime(ms) {
    if (!(ms > 0)) return '–';
    var d = new Date(ms);
    return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + ':' + pad(d.getUTCSeconds()) + ' UTC';
  }
  // fmt formats value v of the payload field named field (views.FormatField).
  function fmt(field, v) {
    if (typeof v === 'string') return v;
    if (typeof v !== 'number' || !isFinite(v)) return '–';
    if (ends(field, '_bytes_per_s')) return fmtBytes(v) + '/s';
    if (ends(field, '_bytes')) return fmtBytes(v);
    if (ends(field, '_pct')) return fixed(v, 1) + '%';
    if (ends(field, '_per_s')) return si(v) + '/s';
    if (ends(field, '_ms')) return fmtMillis(v);
    if (ends(field, '_s')) return fmtDuration(v);
    if (ends(field, '_c') || ends(field, '_celsius')) return fixed(v, 1) + ' °C';
    if (v === Math.trunc(v) && Math.abs(v) < 1e15) return v.toFixed(0);
    return fixed(v, 2);
  }

  // Exposed for the browser test (format cases) and for people at the console.
  window.opsdash = { fmt: fmt, fmtTime: fmtTime, fmtInterval: fmtInterval };

  // ---- binding data to markup

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return (root || document).querySelectorAll(sel); }

  // owned reports whether el belongs to root itself rather than to a nested
  // list item or a nested topic, which are filled from their own data.
  function owned(el, root) {
    for (var p = el.parentElement; p && p !== root; p = p.parentElement) {
      if (p.hasAttribute('data-key') || p.hasAttribute('data-topic')) return false;
    }
    return true;
  }

  // fill writes obj's fields into root's [data-f], meter[data-m] and lists.
  function fill(root, obj) {
    if (!obj) return;
    var els = $$('[data-f],[data-m],[data-list],[data-a],[data-href]', root);
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (!owned(el, root)) continue;
      var f = el.getAttribute('data-f');
      if (f !== null && f in obj) { // a field the payload lacks keeps its text
        var v = obj[f];
        var t = v === null ? (el.hasAttribute('data-null') ? el.getAttribute('data-null') : '–') : fmt(f, v);
        if (el.textContent !== t) el.textContent = t;
      }
      var m = el.getAttribute('data-m');
      if (m !== null && typeof obj[m] === 'number') el.value = obj[m];
      if (m !== null && m in obj) el.hidden = obj[m] === null; // no limit, no bar
      var l = el.getAttribute('data-list');
      if (l !== null) fillList(el, obj[l] || []);
      var a = el.getAttribute('data-a');
      if (a !== null && a in obj) el.setAttribute('data-v', obj[a] === null ? '' : obj[a]);
      var h = el.getAttribute('data-href');
      if (h !== null) el.setAttribute('href', h.replace(/\{(\w+)\}/g, function (_, k) { return encodeURIComponent(obj[k]); }));
    }
  }

  // sortItems: a copy of items, largest item[f] first, others last, ties
  // kept (views.SortItems; Array sort is stable).
  function sortItems(items, f) {
    var n = function (it) { return typeof it[f] === 'number' ? it[f] : -Infinity; };
    return items.slice().sort(function (a, b) { return n(b) - n(a); });
  }

  // fillList makes list's children match items, keyed by the list's data-key
  // field; new items are cloned from the list's <template>. Items keep the
  // order they have in the data (the collector's or the chosen sort).
  function fillList(list, items) {
    var keyField = list.getAttribute('data-key');
    var tpl = list.querySelector(':scope > template');
    var existing = Object.create(null); // keys come from the data: no prototype
    var kids = list.children;
    for (var i = 0; i < kids.length; i++) {
      var k = kids[i].getAttribute('data-key');
      if (k !== null) existing[k] = kids[i];
    }
    var sortBy = list.getAttribute('data-sort');
    if (sortBy) items = sortItems(items, sortBy);
    var limit = +list.getAttribute('data-limit') || items.length;
    var prev = null;
    for (var j = 0; j < items.length && j < limit; j++) {
      var key = String(items[j][keyField]);
      var row = existing[key];
      if (row) delete existing[key];
      else if (tpl) {
        row = tpl.content.firstElementChild.cloneNode(true);
        row.setAttribute('data-key', key);
      } else continue;
      fill(row, items[j]);
      var want = prev ? prev.nextElementSibling : firstItem(list);
      if (want !== row) list.insertBefore(row, want);
      prev = row;
    }
    for (var gone in existing) list.removeChild(existing[gone]);
    var empty = document.getElementById(list.getAttribute('data-empty-id') || '');
    if (empty) empty.hidden = items.length > 0;
  }
  function firstItem(list) {
    for (var c = list.firstElementChild; c; c = c.nextElementSibling) {
      if (c.tagName !== 'TEMPLATE') return c;
    }
    return null;
  }

  // ---- charts: mirrors views/chart.go. The viewBox is fixed: x in seconds
  // over the window, y in percent of the chart's top (negative: SVG's y grows down).

  var CHART_MAX_POINTS = 100;
  var charts = []; // {el, topic, series[], window, max, buf:[{ts, v:[]}], loaded}

  // seriesValue evaluates a series spec: "usage_pct" is a field, "interfaces[].rx_bytes_per_s"
  // the sum of that field over an array (views.SeriesValue).
  function seriesValue(data, spec) {
    var i = spec.indexOf('[].');
    if (i < 0) return typeof data[spec] === 'number' ? data[spec] : null;
    var arr = data[spec.slice(0, i)], f = spec.slice(i + 3), sum = 0;
    if (!Array.isArray(arr)) return null;
    for (var j = 0; j < arr.length; j++) if (arr[j] && typeof arr[j][f] === 'number') sum += arr[j][f];
    return sum;
  }

  function initCharts() {
    var els = $$('svg[data-chart]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      charts.push({
        el: el,
        topic: el.getAttribute('data-topic-chart'),
        interval: +el.getAttribute('data-interval') || 1000,
        series: el.getAttribute('data-series').split(' '),
        window: +el.getAttribute('data-window') * 1000,
        max: +el.getAttribute('data-max') || 0,
        buf: [],
        loaded: false
      });
    }
  }

  function chartPush(c, ts, data) {
    var v = c.series.map(function (s) { return seriesValue(data, s); });
    var b = c.buf;
    if (b.length && ts <= b[b.length - 1].ts) {
      // Older than the newest (history arriving after live values): insert in place, once.
      for (var i = 0; i < b.length; i++) {
        if (b[i].ts === ts) return;
        if (b[i].ts > ts) { b.splice(i, 0, { ts: ts, v: v }); break; }
      }
    } else {
      b.push({ ts: ts, v: v });
    }
    var cut = b[b.length - 1].ts - c.window;
    while (b.length && b[0].ts < cut) b.shift();
  }

  // loadHistory fills a chart from GET /api/v1/topics/{topic}?history=N: that
  // is how a chart is complete on first load and again after a reconnect.
  function loadHistory(c) {
    var n = Math.floor(c.window / c.interval) + 1;
    fetch('/api/v1/topics/' + encodeURIComponent(c.topic) + '?history=' + n, { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (t) {
        if (!t) return;
        (t.history || []).forEach(function (h) { chartPush(c, h.ts, h.data); });
        c.loaded = true;
        dirtyCharts = true;
        requestRender();
      }, function () { /* the next reconnect tries again */ });
  }

  function drawChart(c) {
    var b = c.buf;
    if (!c.loaded || !b.length) return;
    var end = b[b.length - 1].ts, w = c.window / 1000, step = w / CHART_MAX_POINTS;
    var peak = 0, i, j;
    for (i = 0; i < b.length; i++) {
      for (j = 0; j < c.series.length; j++) if (b[i].v[j] !== null && b[i].v[j] > peak) peak = b[i].v[j];
    }
    var top = c.max || niceMax(peak);
    var lines = $$('polyline', c.el);
    for (j = 0; j < c.series.length && j < lines.length; j++) {
      var pts = [], lastX = -1e9;
      for (i = 0; i < b.length; i++) {
        var v = b[i].v[j];
        if (v === null) continue;
        var x = w - (end - b[i].ts) / 1000;
        if (x - lastX < step && i !== b.length - 1) continue;
        lastX = x;
        pts.push(fixed(x, 0) + ',' + fixed(-v / top * 100, 1));
      }
      lines[j].setAttribute('points', pts.join(' '));
    }
    var peakEl = c.el.parentElement.querySelector('[data-peak]');
    if (peakEl) peakEl.textContent = 'peak ' + fmt(peakEl.getAttribute('data-peak'), peak);
  }
  // niceMax mirrors views.niceMax: the peak plus headroom, never 0.
  function niceMax(peak) { return peak > 0 ? peak * 1.15 : 1; }

  // ---- page state

  var body = document.body;
  var patterns = (body.getAttribute('data-subscribe') || '').split(' ').filter(Boolean);
  // The page asks for no more values than it can show (max_hz, protocol
  // extension): its charts and numbers move once a second; a fleet
  // overview of many hosts says it wants fewer (body[data-max-hz]).
  var maxHz = +body.getAttribute('data-max-hz') || 1;
  var loadedAt = performance.now();
  // Maps keyed by topic name have no prototype, so any name is a plain key.
  var latest = Object.create(null);  // topic -> newest update frame
  var arrived = Object.create(null); // topic -> performance.now() of its newest update (the browser's clock)
  var seqs = Object.create(null);    // topic -> newest seq seen from this server instance
  var status = Object.create(null);  // topic -> {status, error}
  var dirty = Object.create(null);   // topics to render on the next frame
  var dirtyCharts = false;
  var rafPending = false;

  function cardsFor(topic) {
    return $$('[data-topic="' + topic + '"]');
  }

  function requestRender() {
    if (rafPending || document.hidden) return; // hidden: render once when shown again
    rafPending = true;
    requestAnimationFrame(render);
  }

  function render() {
    rafPending = false;
    for (var t in dirty) {
      var u = latest[t];
      var els = cardsFor(t);
      for (var i = 0; i < els.length; i++) {
        fill(els[i], u.data);
        renderRaw(els[i], u);
      }
    }
    dirty = Object.create(null);
    if (dirtyCharts) { charts.forEach(drawChart); dirtyCharts = false; }
    markStale(); // a card that just got its value drops its badge now, not at the next tick
  }

  // renderRaw updates the explorer's raw columns (seq, sample time, JSON).
  function renderRaw(el, u) {
    var s = $('[data-seq]', el), ts = $('[data-ts]', el), js = $('[data-json]', el);
    if (s && owned(s, el)) s.textContent = u.seq;
    if (ts && owned(ts, el)) ts.textContent = fmtTime(u.ts);
    if (js && owned(js, el)) js.textContent = cut(JSON.stringify(u.data, null, js.getAttribute('data-json') === 'pretty' ? 2 : 0), +js.getAttribute('data-json-max'));
  }

  // cut shortens s to max characters with "…", as the server's preview does (views/budget.go).
  function cut(s, max) {
    return max > 0 && s.length > max ? s.slice(0, max) + '\u2026' : s;
  }

  // ---- staleness: by the browser's own clock, never the server's ts.

  function markStale() {
    var now = performance.now(), anyStale = false;
    var els = $$('[data-topic][data-interval]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i], t = el.getAttribute('data-topic');
      var iv = +el.getAttribute('data-interval');
      if (iv > 0) iv = Math.max(iv, 1000 / maxHz); // values come no more often than the page asked
      var st = status[t] ? status[t].status : el.getAttribute('data-status');
      var since = t in arrived ? arrived[t] : loadedAt;
      var state = st; // failing stays failing, whatever the clock says
      if (st !== 'failing') {
        if (st !== 'idle' && iv > 0 && now - since > 3 * iv) state = 'stale';
        else if (t in arrived) state = 'ok';
      }
      if (state === 'stale') anyStale = true;
      setBadge(el, state, status[t] && status[t].error);
    }
    return anyStale;
  }

  var BADGE = { ok: '', pending: 'waiting for first value', idle: 'idle until subscribed', stale: 'stale', failing: 'failing' };
  // setBadge shows a state in words (views.BadgeText, or views.StateText
  // for data-badge="all", which names every state including ok).
  function setBadge(el, state, err) {
    var b = $('[data-badge]', el);
    var text = b && b.getAttribute('data-badge') === 'all' ? state : (BADGE[state] === undefined ? state : BADGE[state]);
    if (state === 'failing' && err) text = 'failing: ' + err;
    el.setAttribute('data-state', state);
    if (!b || !owned(b, el) || b.textContent === text) return;
    b.textContent = text;
    b.hidden = text === '';
  }

  // ---- connection: hello, subscribe, heartbeat, reconnect with backoff.

  var BACKOFF_BASE = 500, BACKOFF_CAP = 30000;
  var ws = null, attempt = 0, retryTimer = 0, heartbeatMS = 15000;
  var lastFrame = 0, lastPing = 0, instance = '', greeted = false, nextID = 1, connState = '';
  var connEl = $('[data-conn]');

  function setConn(state, detail) {
    connState = state;
    if (!connEl) return;
    connEl.setAttribute('data-state', state);
    var t = $('[data-conn-text]', connEl) || connEl;
    var text = state + (detail ? ' · ' + detail : '');
    if (t.textContent !== text) t.textContent = text;
  }

  function send(obj) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }

  function connect() {
    clearTimeout(retryTimer);
    var opened = false;
    greeted = false;
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
    var sock;
    try { sock = new WebSocket(url); } catch (e) { return retry(false); }
    ws = sock;
    sock.onopen = function () { opened = true; lastFrame = performance.now(); };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      lastFrame = performance.now();
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onFrame(msg, ev.data);
    };
    sock.onclose = function () { if (ws === sock) retry(opened); };
  }

  // abandon drops the current socket without waiting for its close handshake,
  // which never completes on a dead network path.
  function abandon() {
    var s = ws;
    ws = null;
    if (s) { s.onclose = s.onmessage = null; try { s.close(); } catch (e) { /* already closed */ } }
  }

  function retry(wasOpen) {
    abandon();
    if (!wasOpen) {
      // A browser cannot read a refused handshake's status: ask the API.
      setConn('reconnecting');
      fetch('/api/v1/topics', { cache: 'no-store', credentials: 'same-origin' }).then(function (r) {
        if (r.status === 401) showLogin(); else schedule();
      }, schedule);
      return;
    }
    schedule();
  }

  // schedule waits a random time up to min(cap, base·2^attempt) (full jitter),
  // so a fleet of pages does not reconnect in lockstep after a restart.
  function schedule() {
    var delay = Math.random() * Math.min(BACKOFF_CAP, BACKOFF_BASE * Math.pow(2, Math.min(attempt, 20)));
    attempt++;
    setConn('reconnecting', 'retry in ' + Math.max(1, Math.round(delay / 1000)) + 's');
    retryTimer = setTimeout(connect, delay);
  }

  function showLogin() {
    setConn('login required');
    var l = $('[data-login]');
    if (l) { l.hidden = false; var i = $('input[type=password]', l); if (i) i.focus(); }
  }


  function subscribe(topics) {
    send({ type: 'subscribe', id: 's' + nextID++, topics: topics, max_hz: maxHz });
  }

  function onFrame(m, raw) {
    switch (m.type) {
      case 'hello':
        heartbeatMS = m.heartbeat_ms > 0 ? m.heartbeat_ms : 15000;
        if (m.instance !== instance) seqs = Object.create(null); // a new server process numbers from 1 again
        instance = m.instance;
        greeted = true;
        lastPing = performance.now();
        if (patterns.length) subscribe(patterns);
        else { attempt = 0; setConn('live'); } // nothing to watch (an unknown topic)
        charts.forEach(loadHistory);
        onHello();
        break;
      case 'subscribed':
        attempt = 0;
        setConn('live');
        break;
      case 'update':
        if (seqs[m.topic] >= m.seq) return; // already have it (another pattern, or a replay)
        seqs[m.topic] = m.seq;
        latest[m.topic] = m;
        arrived[m.topic] = performance.now();
        // A value means the topic is collected (an idle one started, a pending one
        // ran); failing stays until the server's status frame says otherwise.
        if (!status[m.topic] || status[m.topic].status !== 'failing') status[m.topic] = { status: 'ok' };
        dirty[m.topic] = true;
        charts.forEach(function (c) { if (c.topic === m.topic) { chartPush(c, m.ts, m.data); dirtyCharts = true; } });
        onUpdate(m, raw);
        requestRender();
        break;
      case 'status':
        status[m.topic] = { status: m.status, error: m.error || '' };
        markStale();
        break;
      case 'topics':
        onTopics(m.topics || []);
        break;
      case 'error':
        onError(m);
        break;
    }
    document.dispatchEvent(new CustomEvent('opsdash:frame', { detail: m })); // for page scripts (fleet.js)
  }

  // A once-a-second tick: protocol ping every heartbeat, dead after two
  // heartbeats without any frame, stale marks, and the header state.
  function tick() {
    var now = performance.now();
    if (ws && ws.readyState === 1) {
      if (now - lastFrame > 2 * heartbeatMS) { retry(true); return; } // silent since open, or since the last frame
      if (greeted && now - lastPing >= heartbeatMS) { lastPing = now; send({ type: 'ping', id: 'p' + nextID++ }); }
    }
    if (document.hidden) return; // no rendering while hidden; render() catches up when shown
    var anyStale = markStale();
    if (connState === 'live' || connState === 'stale') setConn(anyStale ? 'stale' : 'live');
  }

  document.addEventListener('visibilitychange', function () {
    if (document.hidden) return;
    requestRender(); // paint what arrived while hidden, once
    if (!ws && connState === 'reconnecting') connect(); // no reason to wait out the backoff
  });

  // ---- page-specific parts

  // Every page asks for the topic list right after its subscribe, to learn
  // each card's status: the snapshot carries values only, and status frames
  // say changes, so a topic that turned failing (or, on demand, pending)
  // between the page's render and its subscription would otherwise keep
  // the state it was rendered with. The explorer replaces both.
  var onHello = function () { send({ type: 'list', id: 'l' + nextID++ }); };
  var onUpdate = function () {};
  var onTopics = function (ts) {
    ts.forEach(function (t) { if (cardsFor(t.name).length) status[t.name] = { status: t.status, error: t.error || '' }; });
    markStale();
  };
  var onError = function () {};

  // Dashboard: the process table switches between the payload's by_cpu and
  // by_mem lists without a round trip; without JavaScript the links reload.
  var procLinks = $$('[data-proc-list]');
  for (var pi = 0; pi < procLinks.length; pi++) {
    procLinks[pi].addEventListener('click', function (ev) {
      ev.preventDefault();
      for (var k = 0; k < procLinks.length; k++) procLinks[k].setAttribute('aria-current', String(procLinks[k] === this));
      var list = $('[data-procs]');
      if (!list) return;
      list.setAttribute('data-list', this.getAttribute('data-proc-list'));
      var u = latest[list.closest('[data-topic]').getAttribute('data-topic')];
      if (u) fillList(list, u.data[list.getAttribute('data-list')] || []);
      history.replaceState(null, '', this.getAttribute('href'));
    });
  }

  // Explorer: rows for topics that appear later, kept sorted by name.
  var topicRows = $('[data-topic-rows]');
  if (topicRows) {
    var listPending = false;
    onHello = function () { send({ type: 'list', id: 'l' + nextID++ }); listPending = true; };
    onUpdate = function (m) {
      if (!cardsFor(m.topic).length && !listPending) { listPending = true; send({ type: 'list', id: 'l' + nextID++ }); }
    };
    onTopics = function (ts) {
      listPending = false;
      var tpl = $('template', topicRows);
      ts.forEach(function (t) {
        if (!matchAny(t.name)) return;
        status[t.name] = { status: t.status, error: t.error || '' };
        if (cardsFor(t.name).length) return;
        var row = tpl.content.firstElementChild.cloneNode(true);
        row.setAttribute('data-topic', t.name);
        row.setAttribute('data-interval', t.interval_ms);
        row.setAttribute('data-status', t.status);
        var a = $('[data-name]', row);
        a.textContent = t.name;
        a.href = '/topics/' + encodeURIComponent(t.name);
        $('[data-desc]', row).textContent = t.description || '';
        $('[data-iv]', row).textContent = fmtInterval(t.interval_ms);
        var before = null;
        var rows = $$('[data-topic]', topicRows);
        for (var i = 0; i < rows.length; i++) if (rows[i].getAttribute('data-topic') > t.name) { before = rows[i]; break; }
        topicRows.insertBefore(row, before);
        if (latest[t.name]) dirty[t.name] = true;
      });
      var empty = document.getElementById('topics-empty');
      if (empty) empty.hidden = $$('[data-topic]', topicRows).length > 0;
      markStale();
      requestRender();
    };
    onError = function (m) {
      var e = $('[data-pattern-error]');
      if (e) { e.textContent = m.message || m.code; e.hidden = false; }
    };
  }

  // matchAny is the explorer's filter, NATS semantics as in stream.Pattern.Match:
  // "*" one token, ">" one or more trailing tokens.
  function matchAny(topic) {
    return patterns.some(function (p) {
      var pt = p.split('.'), tt = topic.split('.');
      for (var i = 0; i < pt.length; i++) {
        if (pt[i] === '>') return tt.length > i;
        if (i >= tt.length || (pt[i] !== '*' && pt[i] !== tt[i])) return false;
      }
      return pt.length === tt.length;
    });
  }

  // One topic's page: every raw frame as it arrives, newest first.
  var frameLog = $('[data-frames]');
  if (frameLog) {
    var paused = false;
    var pauseBtn = $('[data-pause]');
    if (pauseBtn) pauseBtn.addEventListener('click', function () {
      paused = !paused;
      pauseBtn.setAttribute('aria-pressed', String(paused));
      pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    });
    var logEmpty = $('[data-frames-empty]');
    onUpdate = function (m, raw) {
      if (paused) return;
      var li = document.createElement('li');
      var code = document.createElement('code');
      code.textContent = raw;
      li.appendChild(code);
      frameLog.insertBefore(li, frameLog.firstChild);
      while (frameLog.children.length > 100) frameLog.removeChild(frameLog.lastChild);
      if (logEmpty) logEmpty.hidden = true;
    };
  }

  // ---- workloads and culprits: the Workloads card's order; who was on top
  // where the pointer rests (or a finger taps) on the CPU, memory and disk
  // charts, from GET /api/v1/culprits.

  var wlLinks = $$('[data-wl-sort]');
  for (var wi = 0; wi < wlLinks.length; wi++) {
    wlLinks[wi].addEventListener('click', function (ev) {
      var list = $('[data-testid=workload-rows]');
      var u = list && latest[list.closest('[data-topic]').getAttribute('data-topic')];
      if (!u) return; // no update yet: the link reloads
      ev.preventDefault();
      for (var k = 0; k < wlLinks.length; k++) wlLinks[k].setAttribute('aria-current', String(wlLinks[k] === this));
      list.setAttribute('data-sort', this.getAttribute('data-wl-sort'));
      fillList(list, u.data.workloads || []);
      history.replaceState(null, '', this.getAttribute('href'));
    });
  }

  // chart: list, field, words, unit
  var CULPRITS = {
    cpu: ['cpu', 'cpu_cores', 'CPU', ' cores'],
    mem: ['mem_growth', 'mem_growth_bytes_per_s', 'memory growth', ''],
    disk: ['io', 'io_bytes_per_s', 'disk I/O', '']
  };

  function culpritLi(ul, text, attr, val, href) {
    var li = document.createElement('li'), el = li;
    if (href) { el = document.createElement('a'); el.href = href; li.appendChild(el); }
    el.textContent = text;
    if (attr) li.setAttribute(attr, val);
    ul.appendChild(li);
  }

  function renderCulprits(box, kind, res) {
    var L = CULPRITS[kind], head = document.createElement('p'), ul = document.createElement('ul');
    box.textContent = '';
    box.hidden = false;
    box.appendChild(head);
    if (!res || !res.culprits) {
      head.textContent = 'No culprits recorded for that second';
      return;
    }
    head.textContent = 'Top by ' + L[2] + ' at ' + fmtTime(res.ts);
    var c = res.culprits, ps = c.top_processes[L[0]] || [], ws = c.top_workloads[L[0]] || [];
    // Cores with two decimals whatever the value: "1.00 cores", not "1 cores".
    var num = function (v) { return L[1] === 'cpu_cores' ? fixed(v, 2) : fmt(L[1], v); };
    ps.forEach(function (p) {
      culpritLi(ul, p.name + ' (pid ' + p.pid + (p.workload ? ', ' + p.workload : '') + ') ' + num(p[L[1]]) + L[3], 'data-pid', p.pid);
    });
    ws.forEach(function (w) {
      culpritLi(ul, w.kind + ' ' + w.name + ' ' + num(w[L[1]]) + L[3] + (w.top_process ? ', mostly ' + w.top_process + ' (pid ' + w.top_pid + ')' : ''),
        'data-workload', w.id, hostPath + '/workloads/' + encodeURIComponent(w.id));
    });
    if (!ps.length && !ws.length) culpritLi(ul, 'nothing above zero');
    box.appendChild(ul);
  }

  // hookCulprits gives chart c a cursor and a box naming the culprits of
  // the second under it, asked of api.
  function hookCulprits(c, api) {
    var kind = c.el.getAttribute('data-chart'), fig = c.el.parentElement;
    if (!CULPRITS[kind]) return;
    var box = document.createElement('div');
    box.className = 'culprits';
    box.setAttribute('data-culprits', kind);
    box.setAttribute('role', 'status');
    box.hidden = true;
    fig.appendChild(box);
    var cursor = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    cursor.setAttribute('class', 'cursor');
    cursor.setAttribute('y1', '-100');
    cursor.setAttribute('y2', '0');
    cursor.setAttribute('visibility', 'hidden');
    c.el.appendChild(cursor);
    var timer = 0, asked = 0;
    function show(ev) {
      if (!c.buf.length) return;
      var r = c.el.getBoundingClientRect(), frac = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
      var ts = Math.round(c.buf[c.buf.length - 1].ts - (1 - frac) * c.window), x = fixed(frac * c.window / 1000, 1);
      cursor.setAttribute('x1', x);
      cursor.setAttribute('x2', x);
      cursor.setAttribute('data-ts', ts);
      cursor.removeAttribute('visibility');
      clearTimeout(timer);
      timer = setTimeout(function () {
        var sec = Math.round(ts / 1000);
        if (sec === asked) return;
        asked = sec;
        fetch(api + (api.indexOf('?') < 0 ? '?' : '&') + 'at=' + ts, { cache: 'no-store', credentials: 'same-origin' })
          .then(function (r) { return r.json(); })
          .then(function (res) { if (asked === sec) renderCulprits(box, kind, res); }, function () { asked = 0; });
      }, 120);
    }
    c.el.addEventListener('pointermove', show);
    c.el.addEventListener('pointerdown', show); // tap
    fig.addEventListener('pointerleave', function (ev) {
      if (ev.pointerType !== 'mouse') return; // a tap's answer stays
      clearTimeout(timer);
      cursor.setAttribute('visibility', 'hidden');
      box.hidden = true;
      asked = 0;
    });
  }

  // ---- start

  initCharts();
  var culpritsAPI = $('[data-culprits-api]'); // a host's dashboard
  var hostPath = culpritsAPI ? culpritsAPI.getAttribute('data-host-path') : '';
  if (culpritsAPI) charts.forEach(function (c) { hookCulprits(c, culpritsAPI.getAttribute('data-culprits-api')); });
  // A card the server already judged stale (its value older than 3 intervals
  // by the server's clock) stays stale until a value arrives.
  var served = $$('[data-topic][data-state="stale"]');
  for (var sv = 0; sv < served.length; sv++) arrived[served[sv].getAttribute('data-topic')] = -Infinity;
  setConn('connecting');
  setInterval(tick, 1000);
  connect();
})();
