// Certificates for the browser and SDK tests over TLS, made at test time by the same rcgen code
// as the Rust tests (crates/testkit's test-certificates program, built by `cargo test`).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');

// A new test authority and a server certificate for `names`, in a folder of their own:
// { dir, ca, cert, key } (PEM file paths).
function makeCertificates(names) {
  const program = path.join(root, 'target', 'debug', 'test-certificates');
  if (!fs.existsSync(program)) {
    throw new Error(`${program} is missing: run cargo build -p switchboard-testkit (scripts/test does)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-tls-'));
  execFileSync(program, [dir, ...names]);
  return {
    dir,
    ca: path.join(dir, 'ca.pem'),
    cert: path.join(dir, 'cert.pem'),
    key: path.join(dir, 'key.pem'),
  };
}

module.exports = { makeCertificates };
