'use strict';
let token = sessionStorage.getItem('domicile.token');

async function signIn(e) {
  e.preventDefault();
  const f = new FormData($('signin-form'));
  $('signin-error').textContent = '';
  try {
    const t = await api('POST', '/v1/auth/token', null, { grant_type: 'password', login: f.get('login'), password: f.get('password'), country: f.get('country') });
    token = t.access_token;
    sessionStorage.setItem('domicile.token', token);
    await load();
  } catch (err) { $('signin-error').textContent = err.message; }
}

async function signUp() {
  const f = new FormData($('signin-form'));
  $('signin-error').textContent = '';
  try {
    await api('POST', '/v1/accounts', null, { login: f.get('login'), password: f.get('password'), country: f.get('country') });
    await signIn(new Event('submit'));
  } catch (err) { $('signin-error').textContent = err.message; }
}

function signOut() { sessionStorage.removeItem('domicile.token'); token = null; $('dashboard').classList.add('hidden'); $('signin').classList.remove('hidden'); }

async function setConsent(service, granted) {
  const r = await api('PUT', '/v1/me/consents/' + encodeURIComponent(service), token, { granted });
  $('receipt').textContent = 'Receipt signed by ' + (await api('GET', '/v1/me', token)).region + ': ' + r.receipt;
  await load();
}

async function loadItems() {
  const feed = await api('GET', '/v1/me/changes?limit=1000', token);
  const places = new Set(feed.changes.filter(c => !c.deleted).map(c => c.service + '/' + c.collection));
  const rows = [];
  for (const place of [...places].sort()) {
    const [service, collection] = place.split('/');
    const page = await api('GET', '/v1/me/data/' + encodeURIComponent(service) + '/' + encodeURIComponent(collection) + '?limit=200', token);
    for (const it of page.items) rows.push(row([place, it.key, { num: fmtBytes(it.size) }]));
  }
  fill($('items'), rows, 'no items stored');
}

async function load() {
  try {
    const me = await api('GET', '/v1/me', token);
    $('me-id').textContent = me.user_id; $('me-country').textContent = me.country; $('me-region').textContent = me.region;
    const consents = await api('GET', '/v1/me/consents', token);
    fill($('consents'), consents.map(c => {
      const b = el('button', c.granted ? 'Turn off' : 'Turn on', c.granted ? 'secondary' : '');
      b.dataset.service = c.service;
      b.addEventListener('click', () => setConsent(c.service, !c.granted).catch(err => alert(err.message)));
      return row([c.service, c.purpose, c.version, el('span', c.granted ? 'on' : 'off', 'pill ' + (c.granted ? 'ok' : '')), b]);
    }));
    await loadItems();
    const inbox = await api('GET', '/v1/me/messages', token);
    fill($('messages'), inbox.messages.map(m => row([m.from, m.body, fmtTime(m.sent_at)])), 'no messages');
    const log = await api('GET', '/v1/me/access-log', token);
    fill($('access'), log.entries.slice(-200).reverse().map(a => row([fmtTime(a.at), a.actor, a.role, a.action])), 'nobody else has touched your data');
    $('signin').classList.add('hidden');
    $('dashboard').classList.remove('hidden');
  } catch (err) {
    if (err.status === 401) signOut();
    $('signin-error').textContent = err.message;
  }
}

async function exportAll() {
  const blob = await api('GET', '/v1/me/export', token);
  const a = el('a'); a.href = URL.createObjectURL(blob); a.download = 'domicile-export.zip'; a.click();
}

async function erase() {
  if (!confirm('Delete your account? Your keys are destroyed first; this cannot be undone.')) return;
  await api('DELETE', '/v1/me', token);
  signOut();
  $('signin-error').textContent = 'Your account was erased.';
}

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('signup').addEventListener('click', signUp);
  $('signout').addEventListener('click', signOut);
  $('export').addEventListener('click', () => exportAll().catch(err => alert(err.message)));
  $('erase').addEventListener('click', () => erase().catch(err => alert(err.message)));
  if (token) load();
});
