// A webhook receiver for benchmarks: answers 204 at once and counts the events it got. The
// count is written to $SINK_COUNT every 200 ms (whole, by rename), so a run can tell how many
// reached it without a file write per event slowing the receiver down.
const http = require('node:http');
const fs = require('node:fs');

let count = 0;
let written = -1;
const file = process.env.SINK_COUNT;
function save() {
  if (!file || written === count) return;
  fs.writeFileSync(`${file}.tmp`, String(count));
  fs.renameSync(`${file}.tmp`, file);
  written = count;
}
if (file) setInterval(save, 200).unref();
process.on('SIGTERM', () => {
  save();
  process.exit(0);
});
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    count += 1;
    res.writeHead(204);
    res.end();
  });
}).listen(Number(process.env.PORT || 3251), '127.0.0.1', () => console.log('listening'));
