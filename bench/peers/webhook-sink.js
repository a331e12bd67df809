// A webhook receiver for benchmarks: answers 204 at once and counts the events it got (written
// to $SINK_COUNT after each), so a run can tell how many reached it.
const http = require('node:http');
const fs = require('node:fs');

let count = 0;
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    count += 1;
    res.writeHead(204);
    res.end();
    if (process.env.SINK_COUNT) fs.writeFileSync(process.env.SINK_COUNT, String(count));
  });
}).listen(Number(process.env.PORT || 3251), '127.0.0.1', () => console.log('listening'));
