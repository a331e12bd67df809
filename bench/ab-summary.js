// Medians of a scripts/bench-ab run, per case: messages/s or deliveries/s, p99, server CPU.
const fs = require('node:fs');
const lines = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const cases = new Map();
for (const line of lines) {
  if (!cases.has(line.case)) cases.set(line.case, []);
  cases.get(line.case).push(line);
}
console.log('| case | runs | rate (median) | p99 ms | server CPU ms per 1,000 | webhooks received |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [name, runs] of cases) {
  const r = runs.map((x) => x.result);
  const rate = median(r.map((x) => x.messages_per_s ?? x.deliveries_per_s));
  const p99 = median(r.map((x) => (x.send_to_ok ?? x.latency ?? {}).p99_ms));
  const cpu = median(r.map((x) => x.cpu_ms_per_1000_deliveries
    ?? (x.server && x.acknowledged ? Math.round((x.server.cpu_seconds * 1e7) / x.acknowledged) / 10 : undefined)));
  const hooks = runs.some((x) => 'webhooks_received' in x)
    ? runs.map((x) => `${x.webhooks_received}/${x.result.acknowledged}`).join(', ')
    : '';
  console.log(`| ${name} | ${runs.length} | ${rate} | ${p99} | ${cpu ?? ''} | ${hooks} |`);
}
