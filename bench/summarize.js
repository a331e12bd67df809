// Turns the JSON lines of a scripts/bench-compare run into the comparison table of
// BENCHMARKS.md (medians of the repeats, ratios to Switchboard), between the compare markers.
const fs = require('node:fs');
const [results, target] = process.argv.slice(2);
const runs = fs.readFileSync(results, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
const median = (values) => {
  const sorted = values.filter((v) => typeof v === 'number').sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const servers = ['switchboard', 'ws', 'socketio'];
const cases = [...new Set(runs.filter((r) => !r.case.startsWith('S2')).map((r) => r.case))];
const fmt = (v, digits = 2) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));
const pick = (c, s, f) => median(runs.filter((r) => r.case === c && r.server === s && !r.result.error).map((r) => f(r.result)));
let table = '| case | server | deliveries/s | p99 ms | loss | CPU ms / 1,000 deliveries | ratio to Switchboard | RSS / connection KiB |\n';
table += '| --- | --- | --- | --- | --- | --- | --- | --- |\n';
for (const c of cases) {
  const ours = pick(c, 'switchboard', (r) => r.cpu_ms_per_1000_deliveries);
  for (const s of servers) {
    const cpu = pick(c, s, (r) => r.cpu_ms_per_1000_deliveries);
    const ratio = ours && cpu ? ours / cpu : null;
    table += `| ${c} | ${s} | ${fmt(pick(c, s, (r) => r.deliveries_per_s), 0)} | ${fmt(pick(c, s, (r) => r.latency.p99_ms))} | ${fmt(pick(c, s, (r) => r.loss), 4)} | ${fmt(cpu, 3)} | ${s === 'switchboard' ? '1' : ratio === null ? '–' : `Switchboard uses ${fmt(ratio)}×`} | ${fmt(pick(c, s, (r) => r.rss_per_connection_kib), 1)} |\n`;
  }
}
let sweep = '\n| S2 capacity (1 room × 1,000 subscribers) | highest rate with p99 ≤ 50 ms and loss ≤ 0.1 % | deliveries/s there |\n| --- | --- | --- |\n';
for (const s of servers) {
  const passing = runs.filter((r) => r.case.startsWith('S2') && r.server === s && !r.result.error && r.result.loss <= 0.001 && r.result.latency.p99_ms <= 50);
  const best = passing.sort((a, b) => b.result.params.rate - a.result.params.rate)[0];
  sweep += `| ${s} | ${best ? best.result.params.rate + '/s' : 'none'} | ${best ? fmt(best.result.deliveries_per_s, 0) : '–'} |\n`;
}
const block = `<!-- compare:start -->\n${table}${sweep}\nRaw results: \`${require('node:path').basename(results)}\`.\n<!-- compare:end -->`;
let doc = fs.readFileSync(target, 'utf8');
doc = doc.includes('<!-- compare:start -->')
  ? doc.replace(/<!-- compare:start -->[\s\S]*<!-- compare:end -->/, block)
  : `${doc}\n## Side by side with ws and Socket.IO\n\n${block}\n`;
fs.writeFileSync(target, doc);
console.log(table + sweep);
