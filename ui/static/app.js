// leviathan's topology view: draws GET /topology with Cytoscape.js and
// fetches it again whenever /v2/notifications/ws reports a change.
//
// Every URL is built from location.origin / location.host, never from
// the page's own URL: a page opened as http://user:pass@host/ui would
// otherwise put the credentials in each request URL, which fetch refuses.
// Same-origin requests carry the browser's basic-auth credentials.
'use strict';
(function () {
  const origin = location.origin;
  const wsURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v2/notifications/ws';
  const $ = (id) => document.getElementById(id);
  const kindOrder = { host: 0, cin: 1, cen: 2, cpool: 3, container: 4 };
  const colours = { configured: '#2e8b57', running: '#2e8b57', unconfigured: '#e07b00', pending: '#d4a017', deleting: '#d4a017', stopped: '#8a8a8a', off: '#8a8a8a', failed: '#d0342c', unknown: '#d0342c' };

  let topo = { nodes: [], links: [] };
  let selected = null; // id of the selected node or link
  let loading = false;
  let again = false;

  const cy = cytoscape({
    container: $('graph'),
    wheelSensitivity: 0.3,
    style: [
      { selector: 'node', style: {
        'label': 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4,
        'background-color': (n) => colours[n.data('state')] || '#d4a017',
        'border-width': 1, 'border-color': '#333' } },
      { selector: 'node.container', style: { 'shape': 'round-rectangle', 'width': 34, 'height': 24 } },
      { selector: 'node.cen', style: { 'shape': 'hexagon', 'width': 30, 'height': 30 } },
      { selector: 'node.cin, node.host', style: {
        'background-opacity': 0.06, 'border-style': 'dashed', 'border-color': (n) => colours[n.data('state')] || '#888',
        'border-width': 2, 'text-valign': 'top', 'text-halign': 'center', 'font-weight': 'bold', 'padding': 14,
        'text-background-color': '#fafafa', 'text-background-opacity': 1, 'text-margin-y': -2 } },
      { selector: 'node.host', style: { 'border-style': 'dotted', 'background-color': '#1f2d3d' } },
      { selector: 'edge', style: {
        'width': 2, 'line-color': '#789', 'curve-style': 'bezier', 'label': 'data(label)', 'font-size': 9,
        'text-rotation': 'autorotate', 'text-background-color': '#fafafa', 'text-background-opacity': 1 } },
      { selector: 'edge.unwired', style: { 'line-style': 'dashed', 'line-color': '#bbb' } },
      { selector: ':selected', style: { 'overlay-color': '#1e90ff', 'overlay-opacity': 0.25, 'overlay-padding': 4 } },
    ],
  });
  cy.on('tap', 'node, edge', (e) => select(e.target.id()));
  cy.on('tap', (e) => { if (e.target === cy) select(null); });

  function groupLabel(n) {
    if (n.kind === 'cin') return 'CIN ' + n.label + (n.prefix ? ' ' + n.prefix : '');
    if (n.kind === 'host') return 'host ' + n.label;
    return n.label;
  }

  function linkLabel(l) {
    return [l.interface, l.ipaddress].filter(Boolean).join(' ');
  }

  // render replaces the drawing with t, keeping the positions of nodes
  // already drawn, and laying out again only when nodes came or went.
  function render(t) {
    const ids = new Set(t.nodes.map((n) => n.id));
    const pos = {};
    cy.nodes().forEach((n) => { pos[n.id()] = Object.assign({}, n.position()); });
    const same = t.nodes.length === cy.nodes().length && t.nodes.every((n) => pos[n.id] !== undefined);
    const els = [];
    for (const n of t.nodes) {
      const data = Object.assign({}, n, { label: groupLabel(n) });
      if (!n.parent || !ids.has(n.parent)) delete data.parent;
      els.push({ group: 'nodes', data, classes: n.kind, position: pos[n.id] });
    }
    for (const l of t.links) {
      if (!ids.has(l.source) || !ids.has(l.target)) continue;
      els.push({ group: 'edges', data: Object.assign({}, l, { label: linkLabel(l) }), classes: l.state });
    }
    cy.batch(() => {
      cy.elements().remove();
      cy.add(els);
    });
    if (!same) {
      cy.layout({ name: 'cose', animate: false, nodeDimensionsIncludeLabels: true, padding: 30, randomize: false }).run();
    }
    if (selected && cy.getElementById(selected).length) cy.getElementById(selected).select();
    renderList(t);
    renderDetails();
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }

  function badge(state) { return el('span', { class: 'st st-' + state }, state); }

  // renderList writes every object into the side list, so that the names
  // are in the page as text, not only in the canvas.
  function renderList(t) {
    const ul = $('objects');
    ul.replaceChildren();
    const nodes = t.nodes.slice().sort((a, b) => (kindOrder[a.kind] - kindOrder[b.kind]) || a.label.localeCompare(b.label));
    for (const n of nodes) {
      ul.append(el('li', { 'data-id': n.id, class: n.id === selected ? 'sel' : '', onclick: () => select(n.id) },
        el('span', { class: 'kind' }, n.kind), el('span', { class: 'name' }, n.label), badge(n.state)));
    }
  }

  function row(name, value) {
    if (value === undefined || value === null || value === '' || (Array.isArray(value) && !value.length)) return null;
    return el('tr', {}, el('th', {}, name), el('td', {}, Array.isArray(value) ? value.join(', ') : value));
  }

  function pcapLink(l) {
    if (!l.pcap) return '—';
    return el('a', { href: origin + l.pcap, download: l.containerID + '-' + l.cenID + '.pcap', title: 'live capture (pcap) of this link' }, 'capture');
  }

  function linksTable(links, other) {
    if (!links.length) return null;
    const t = el('table', { class: 'links' },
      el('tr', {}, el('th', {}, other), el('th', {}, 'interface'), el('th', {}, 'MAC'), el('th', {}, 'address'), el('th', {}, 'pcap')));
    for (const l of links) {
      t.append(el('tr', {},
        el('td', {}, other === 'CEN' ? l.cenID : l.containerID),
        el('td', {}, l.interface || l.state), el('td', {}, l.mac || ''), el('td', {}, l.ipaddress || ''), el('td', {}, pcapLink(l))));
    }
    return t;
  }

  function renderDetails() {
    const d = $('details');
    const n = topo.nodes.find((x) => x.id === selected);
    const l = topo.links.find((x) => x.id === selected);
    if (!n && !l) {
      d.replaceChildren(el('p', { class: 'hint' }, 'Click a container, CEN, CIN or link for its details.'));
      return;
    }
    if (l) {
      d.replaceChildren(el('h3', {}, l.containerID + ' — ' + l.cenID), el('table', {},
        row('state', l.state), row('host', l.hostID), row('interface', l.interface), row('MAC', l.mac),
        row('address', l.ipaddress), row('CIN', l.cinID)), el('p', {}, pcapLink(l)));
      return;
    }
    const parts = [el('h3', {}, n.kind + ' ', n.label, ' ', badge(n.state)), el('table', {},
      row('error', n.error), row('host', n.hostID), row('runtime', n.runtime), row('netns', n.netns), row('tag', n.tag),
      row('wiring', n.wiring_type), row('interface name', n.ifname), row('prefix', n.prefix), row('CENs', n.cenIDs))];
    if (n.kind === 'container') parts.push(linksTable(topo.links.filter((x) => x.source === n.id), 'CEN'));
    if (n.kind === 'cen') parts.push(linksTable(topo.links.filter((x) => x.target === n.id), 'member'));
    d.replaceChildren(...parts.filter(Boolean));
  }

  function select(id) {
    selected = id;
    cy.elements().unselect();
    if (id && cy.getElementById(id).length) cy.getElementById(id).select();
    for (const li of $('objects').children) li.classList.toggle('sel', li.dataset.id === id);
    renderDetails();
  }

  function showError(msg) {
    const e = $('error');
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  // load fetches the topology; calls while one is in flight coalesce
  // into one more fetch after it.
  async function load() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      do {
        again = false;
        const r = await fetch(origin + '/topology', { credentials: 'same-origin', cache: 'no-store' });
        if (!r.ok) throw new Error('GET /topology: HTTP ' + r.status);
        topo = await r.json();
        const host = topo.nodes.find((n) => n.kind === 'host');
        $('host').textContent = host ? host.label : '';
        render(topo);
        showError('');
      } while (again);
    } catch (err) {
      showError(String(err));
    } finally {
      loading = false;
    }
  }

  function setStatus(s) {
    const e = $('status');
    e.textContent = s;
    e.className = 'status ' + (s === 'live' ? 'live' : 'down');
  }

  let timer = null;
  function changed() {
    clearTimeout(timer);
    timer = setTimeout(load, 100);
  }

  function connect() {
    const ws = new WebSocket(wsURL);
    ws.onopen = () => { setStatus('live'); load(); };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (ev.action !== 'ping') changed();
    };
    ws.onclose = () => { setStatus('reconnecting'); setTimeout(connect, 2000); };
  }

  load();
  connect();
})();
