'use strict';
// Shared helpers. Text always goes in through textContent: keys and names are user data.
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    if (c instanceof Node) { const td = document.createElement('td'); td.appendChild(c); tr.appendChild(td); }
    else if (c && typeof c === 'object' && 'num' in c) tr.appendChild(el('td', c.num, 'num'));
    else tr.appendChild(el('td', c));
  }
  return tr;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0) { const tr = row([empty || 'nothing here']); tr.firstChild.colSpan = 6; tr.className = 'muted'; tbody.appendChild(tr); }
}

async function api(method, path, token, body) {
  const headers = {};
  if (token) headers['authorization'] = 'Bearer ' + token;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = r.headers.get('content-type') || '';
  if (!r.ok) {
    const p = type.includes('json') ? await r.json() : {};
    const err = new Error(p.detail || ('the server answered ' + r.status));
    err.code = p.code; err.status = r.status;
    throw err;
  }
  if (r.status === 204 || r.status === 202 && !type.includes('json')) return null;
  return type.includes('json') ? r.json() : r.blob();
}

const fmtBytes = (n) => n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB';
const fmtTime = (t) => t ? new Date(t).toLocaleString() : '';
