// opsdash fleet overview: the parts of / in a fleet that app.js does not
// know about. app.js keeps each row's numbers and badge current from
// <host>.summary (rows are [data-topic] elements); this file adds live
// CPU sparklines, rows for hosts that join later, the filter, the counts,
// and keeps hosts that need attention (silent, failing) on top.
// It hears app.js's frames as 'opsdash:frame' events on document.
(function () {
  'use strict';
  var rows = document.querySelector('[data-fleet-rows]');
  if (!rows) return;
  var tpl = rows.querySelector('template[data-fleet-row]');
  var filterEl = document.querySelector('[data-fleet-filter]');
  var countsEl = document.querySelector('[data-fleet-counts]');
  var POINTS = 30; // views.SparkPoints, one per value received (every 2 s, views.FleetMaxHz)
  var SUFFIX = '.summary';
  var spark = Object.create(null); // host -> newest CPU values (oldest first)
  var failing = Object.create(null); // host -> failing topics

  function hostOf(topic) { return topic.slice(0, -SUFFIX.length); }
  function rowFor(host) { return rows.querySelector('tr[data-host="' + host + '"]'); }

  // The server drew each sparkline: take its values back from the points.
  Array.prototype.forEach.call(rows.querySelectorAll('tr[data-host]'), function (tr) {
    var pl = tr.querySelector('[data-spark] polyline');
    var pts = (pl && pl.getAttribute('points') || '').split(' ').filter(Boolean);
    spark[tr.getAttribute('data-host')] = pts.map(function (p) { return 100 - +p.split(',')[1]; });
  });

  function addRow(host) {
    var tr = tpl.content.firstElementChild.cloneNode(true);
    tr.setAttribute('data-host', host);
    tr.setAttribute('data-topic', host + SUFFIX);
    var a = tr.querySelector('[data-host-link]');
    a.textContent = host;
    a.href = '/hosts/' + encodeURIComponent(host);
    rows.insertBefore(tr, tpl);
    spark[host] = [];
    applyFilter();
    return tr;
  }

  function draw(tr, vals) {
    var pl = tr.querySelector('[data-spark] polyline');
    if (!pl) return;
    var off = POINTS - vals.length, out = [];
    for (var i = 0; i < vals.length; i++) out.push((i + off) + ',' + Math.round(100 - Math.min(Math.max(vals[i], 0), 100)));
    pl.setAttribute('points', out.join(' '));
  }

  document.addEventListener('opsdash:frame', function (ev) {
    var m = ev.detail;
    if (m.type !== 'update' || m.topic.slice(-SUFFIX.length) !== SUFFIX) return;
    var host = hostOf(m.topic);
    var tr = rowFor(host) || addRow(host);
    var vals = spark[host] || (spark[host] = []);
    if (typeof m.data.cpu_pct === 'number') {
      vals.push(m.data.cpu_pct);
      while (vals.length > POINTS) vals.shift();
      if (!document.hidden) draw(tr, vals);
    }
    var f = (m.data.failing || []).join(', ');
    failing[host] = f;
    var fl = tr.querySelector('[data-failing]');
    var text = f ? 'failing: ' + f : '';
    if (fl && fl.textContent !== text) fl.textContent = text;
  });

  // rank: silent (no value, feed lost: app.js's failing or stale) first,
  // then hosts with failing topics, then waiting ones, then the rest.
  function rank(tr) {
    var st = tr.getAttribute('data-state');
    if (st === 'failing' || st === 'stale') return 0;
    if (failing[tr.getAttribute('data-host')]) return 1;
    if (st === 'pending') return 2;
    return 3;
  }

  function reorder() {
    var list = Array.prototype.slice.call(rows.querySelectorAll('tr[data-host]'));
    var silent = 0, bad = 0;
    var keyed = list.map(function (tr) {
      var r = rank(tr);
      if (r === 0) silent++; else if (r === 1) bad++;
      return { tr: tr, r: r, h: tr.getAttribute('data-host') };
    });
    keyed.sort(function (a, b) { return a.r - b.r || (a.h < b.h ? -1 : a.h > b.h ? 1 : 0); });
    var changed = keyed.some(function (k, i) { return k.tr !== list[i]; });
    if (changed) keyed.forEach(function (k) { rows.insertBefore(k.tr, tpl); });
    if (countsEl) {
      var t = list.length + ' hosts · ' + silent + ' silent · ' + bad + ' failing';
      if (countsEl.textContent !== t) countsEl.textContent = t;
    }
  }

  function applyFilter() {
    var q = filterEl ? filterEl.value.trim().toLowerCase() : '';
    Array.prototype.forEach.call(rows.querySelectorAll('tr[data-host]'), function (tr) {
      tr.hidden = q !== '' && tr.getAttribute('data-host').indexOf(q) < 0;
    });
  }

  if (filterEl) {
    filterEl.addEventListener('input', function () {
      applyFilter();
      var u = new URL(location.href);
      if (filterEl.value) u.searchParams.set('q', filterEl.value); else u.searchParams.delete('q');
      history.replaceState(null, '', u.pathname + u.search);
    });
    filterEl.form.addEventListener('submit', function (ev) { ev.preventDefault(); });
  }
  document.addEventListener('visibilitychange', function () {
    if (document.hidden) return;
    Array.prototype.forEach.call(rows.querySelectorAll('tr[data-host]'), function (tr) { draw(tr, spark[tr.getAttribute('data-host')] || []); });
  });
  setInterval(reorder, 1000);
})();
