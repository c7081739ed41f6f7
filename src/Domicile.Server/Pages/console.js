'use strict';
let token = sessionStorage.getItem('domicile.operator');
let policy = null;

async function loadHealth() {
  const h = await api('GET', '/v1/sys/health');
  let users = {};
  if (token) { try { const s = await api('GET', '/v1/sys/status', token); for (const r of s.regions) users[r.id] = r.users; } catch { } }
  fill($('regions'), h.regions.map(r => row([r.id, el('span', r.sealed ? 'sealed' : 'unsealed', 'pill ' + (r.sealed ? 'bad' : 'ok')), users[r.id] ?? '—'])));
  for (const sel of [$('unseal-region'), $('migrate-to')]) {
    const current = sel.value;
    sel.replaceChildren(...h.regions.map(r => { const o = el('option', r.id); o.value = r.id; return o; }));
    if (current) sel.value = current;
  }
}

async function unseal(e) {
  e.preventDefault();
  const f = new FormData($('unseal-form'));
  try {
    const p = await api('POST', '/v1/sys/unseal', null, { region: f.get('region'), share: f.get('share') });
    $('unseal-result').textContent = p.region + ': ' + p.progress + '/' + p.threshold + (p.sealed ? ' shares; still sealed' : '; unsealed');
    $('unseal-form').reset();
    await loadHealth();
  } catch (err) { $('unseal-result').textContent = err.message; }
}

async function loadOperator() {
  const report = await api('GET', '/v1/sys/residency', token);
  const v = $('violations');
  v.textContent = report.violation_count === 0 ? 'no violations' : report.violation_count + ' violations';
  v.className = 'pill ' + (report.violation_count === 0 ? 'ok' : 'bad');
  const bad = new Set(report.violations.map(x => x.region + '/' + x.jurisdiction));
  const rows = [];
  for (const r of report.regions)
    for (const [cc, c] of Object.entries(r.jurisdictions))
      rows.push(row([r.id, cc, { num: c.users.toLocaleString() }, { num: c.items.toLocaleString() }, { num: fmtBytes(c.bytes) },
        el('span', bad.has(r.id + '/' + cc) ? 'violation' : 'allowed', 'pill ' + (bad.has(r.id + '/' + cc) ? 'bad' : 'ok'))]));
  fill($('residency'), rows, 'no users yet');
  const m = await api('GET', '/v1/sys/migrations', token);
  fill($('migrations'), m.migrations.map(x => {
    const p = el('progress'); p.max = Math.max(1, x.total); p.value = x.done;
    return row([x.id, x.state, p, { num: x.items.toLocaleString() }, { num: x.failed }]);
  }), 'no migrations yet');
  const h = await api('GET', '/v1/sys/health');
  const audit = [];
  for (const r of h.regions) {
    const a = await api('GET', '/v1/sys/audit/' + encodeURIComponent(r.id) + '/verify', token);
    audit.push(row([a.region, { num: a.entries.toLocaleString() }, el('span', a.ok ? 'intact' : 'broken at entry ' + a.first_bad_seq, 'pill ' + (a.ok ? 'ok' : 'bad'))]));
  }
  fill($('audit'), audit);
  $('operator').classList.remove('hidden');
}

async function useToken(e) {
  e.preventDefault();
  token = new FormData($('token-form')).get('token');
  $('token-error').textContent = '';
  try { await loadOperator(); sessionStorage.setItem('domicile.operator', token); await loadHealth(); }
  catch (err) { $('token-error').textContent = err.message; $('operator').classList.add('hidden'); }
}

async function migrate(e) {
  e.preventDefault();
  const f = new FormData($('migrate-form'));
  $('migrate-error').textContent = '';
  try { await api('POST', '/v1/sys/migrations', token, { jurisdiction: f.get('jurisdiction'), to: f.get('to') }); await loadOperator(); }
  catch (err) { $('migrate-error').textContent = err.message; }
}

document.addEventListener('DOMContentLoaded', () => {
  $('unseal-form').addEventListener('submit', unseal);
  $('token-form').addEventListener('submit', useToken);
  $('migrate-form').addEventListener('submit', migrate);
  loadHealth();
  if (token) loadOperator().catch(() => { });
  setInterval(() => { loadHealth().catch(() => { }); if (token && !$('operator').classList.contains('hidden')) loadOperator().catch(() => { }); }, 3000);
});
