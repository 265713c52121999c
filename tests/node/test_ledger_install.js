'use strict';
// `npm install <path>` of the package, as a user does it, offline (the
// package has no dependencies): from the checkout (npm links the
// directory; the addon is found in the build tree, $B) and from what
// `make install` put under DESTDIR (a copy with its addon); then
// require('ratectl') in that project admits against a ledger.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const TOP = path.join(__dirname, '..', '..');
const B = process.env.B || 'build';

function npmInstall(proj, what) {
  fs.mkdirSync(proj, { recursive: true });
  fs.writeFileSync(path.join(proj, 'package.json'), '{"name":"p","version":"1.0.0","private":true}\n');
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', what],
    { cwd: proj, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 });
}

function useIt(proj, ledger) {
  const env = { ...process.env };
  delete env.RATECTL_NODE_ADDON;   // found by the package itself
  return execFileSync(process.execPath, ['-e', `
    const r = require('ratectl');
    const L = new r.Ledger(${JSON.stringify(ledger)});
    L.set('i', { requests: '10/s' });
    const l = L.tryAcquire('i');
    l.release();
    console.log(r.version, L.budget('i').counters.admitted);`],
  { cwd: proj, env, encoding: 'utf8', timeout: 20000 }).trim();
}

test('npm install of the checkout\'s lib/node', { timeout: 90000 }, (t) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-npm-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  npmInstall(path.join(d, 'proj'), path.join(TOP, 'lib', 'node'));
  assert.match(useIt(path.join(d, 'proj'), path.join(d, 'ledger')), /^\d+\.\d+\.\d+ 1$/);
});

test('npm install of the package make install wrote', { timeout: 120000 }, (t) => {
  if (process.env.RATECTL_SANITIZER) {
    // make install relinks with the flags of its own command line.
    t.skip(`a ${process.env.RATECTL_SANITIZER} build: make install is checked in the plain run`);
    return;
  }
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ratectl-npm-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  const dest = path.join(d, 'dest');
  execFileSync('make', ['--no-print-directory', '-s', `B=${B}`, 'install', `DESTDIR=${dest}`,
    'PREFIX=/usr/local'], { cwd: TOP, stdio: ['ignore', 'pipe', 'pipe'], timeout: 100000 });
  const pkg = path.join(dest, 'usr', 'local', 'lib', 'node_modules', 'ratectl');
  assert.ok(fs.existsSync(path.join(pkg, 'build', 'ratectl.node')));
  npmInstall(path.join(d, 'proj'), pkg);
  assert.match(useIt(path.join(d, 'proj'), path.join(d, 'ledger')), /^\d+\.\d+\.\d+ 1$/);
});
