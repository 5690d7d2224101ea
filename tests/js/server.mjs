// Starts the real jobstream-server (a free port, a temp data dir, both removed when it
// stops) and jobstream-gateway on 127.0.0.1. Shared by the Node tests.
import { spawn } from 'node:child_process';
import {
  chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

// Not import.meta.dirname: Debian 12's Node (18) does not have it.
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN_DIR = process.env.JOBSTREAM_BIN_DIR ?? path.join(ROOT, 'build');

// What the servers and gateways print goes to a file each (artifacts/logs), not into the
// test's output: there it buried a failure's message, and a CI log keeps only its head and
// tail. A file whose tests failed prints the end of every log once, after its results, and
// keeps them; one whose tests passed removes them.
const LOG_DIR = path.join(BIN_DIR, 'artifacts', 'logs');
const logs = [];
process.on('exit', (code) => {
  if (code === 0) {
    for (const file of logs) rmSync(file, { force: true });
    return;
  }
  for (const file of logs) {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    process.stderr.write(`--- the last ${Math.min(lines.length, 60)} of ${lines.length} lines of ${file}\n` +
      `${lines.slice(-60).join('\n')}\n`);
  }
});

function logFile(binary) {
  mkdirSync(LOG_DIR, { recursive: true });
  const test = path.basename(process.argv[1] ?? 'node', '.test.mjs');
  const file = path.join(LOG_DIR, `${test}-${process.pid}-${logs.length}-${path.basename(binary)}.log`);
  logs.push(file);
  return file;
}

// Spawns a binary that prints "listening on HOST:PORT" first; resolves to its address.
async function spawnListening(binary, args) {
  const log = openSync(logFile(binary), 'w');
  const child = spawn(path.join(BIN_DIR, binary), args, { stdio: ['ignore', 'pipe', log] });
  closeSync(log);  // the child holds its own copy
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${binary} exited with ${code}`)));
  });
  const match = /^listening on (\S+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line: ${first}`);
  return { child, address: match[1] };
}

// kill() is SIGKILL, like a crash; stop() is SIGTERM. Both resolve to the exit code, at
// once for a process that has already exited (a test that failed after killing one must
// not then wait for an exit that happened: it held a failed run for ctest's 300 s).
function controls(child) {
  const signal = (name) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      return Promise.resolve(child.exitCode);
    }
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(name);
    return exited;
  };
  return { kill: () => signal('SIGKILL'), stop: () => signal('SIGTERM') };
}

// `port` and `dataDir` let a test restart a server where it was.
export async function startServer(flags = [], { port = 0, dataDir = null } = {}) {
  dataDir ??= mkdtempSync(path.join(tmpdir(), 'jobstream-js-'));
  const { child, address } = await spawnListening('server/jobstream-server',
    [`--listen=127.0.0.1:${port}`, `--data_dir=${dataDir}`,
      // The fixed default port would collide with another server on this machine.
      ...(flags.some((f) => f.startsWith('--metrics_listen')) ? [] : ['--metrics_listen=off']),
      ...flags]);
  return {
    address,
    dataDir,
    port: Number(address.split(':')[1]),
    kill: controls(child).kill,  // keeps the data dir, for a restart
    async stop() {
      const code = await controls(child).stop();
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

// Starts jobstream-gateway in front of `serverAddress`; `port` 0 picks one.
export async function startGateway(serverAddress, { port = 0, flags = [] } = {}) {
  const { child, address } = await spawnListening('gateway/jobstream-gateway',
    [`--listen=127.0.0.1:${port}`, `--server=${serverAddress}`, ...flags]);
  return {
    address,
    url: `http://${address}`,
    port: Number(address.split(':')[1]),
    ...controls(child),
  };
}

// A PostgreSQL 15 for the suite: a fresh database on the ctest run's (the fixture file
// $JOBSTREAM_TEST_POSTGRES names its port: tests/support/shared_postgres.sh), or else one of
// the suite's own (Debian's postgresql-15): initdb in a temp dir (as the postgres user when
// run as root: initdb refuses root), on a free loopback port. Resolves to its URL,
// createDatabase() and stop(); null where PostgreSQL is not installed.
export async function startPostgres() {
  const bin = '/usr/lib/postgresql/15/bin';
  if (!existsSync(`${bin}/initdb`)) return null;
  const run = (argv) => new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: ${code}`))));
  });
  if (process.env.JOBSTREAM_TEST_POSTGRES) return sharedPostgres(bin, run);
  const dir = mkdtempSync(path.join(tmpdir(), 'jobstream-js-pg-'));
  const asPostgres = process.getuid() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asPostgres.length) chownSync(dir, ...postgresIds());
  const data = path.join(dir, 'data');
  await run([...asPostgres, `${bin}/initdb`, '-D', data, '-U', 'postgres', '-A', 'trust']);
  const port = await freePort();
  const argv = [...asPostgres, `${bin}/postgres`, '-D', data, '-p', String(port), '-k', dir,
    '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on'];
  const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore', detached: true });
  for (let i = 0; ; i++) {
    try {
      await run([`${bin}/pg_isready`, '-q', '-h', '127.0.0.1', '-p', String(port)]);
      break;
    } catch (e) {
      if (i === 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const urlOf = (database) => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  let databases = 0;
  return {
    url: urlOf('postgres'),
    // A fresh, empty database on this PostgreSQL: a store no other server shares.
    async createDatabase() {
      const name = `jobstream_${++databases}`;
      await run([`${bin}/createdb`, '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', name]);
      return urlOf(name);
    },
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      process.kill(-child.pid, 'SIGINT');  // its group: runuser and postgres
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Databases of this suite's own on the ctest run's PostgreSQL, dropped by stop().
async function sharedPostgres(bin, run) {
  const file = process.env.JOBSTREAM_TEST_POSTGRES;
  const port = existsSync(file) ? Number(readFileSync(file, 'utf8').split(' ')[0]) : 0;
  if (!port) throw new Error(`the ctest run's PostgreSQL did not start (no port in ${file})`);
  const at = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'];
  const names = [];
  const createDatabase = async () => {
    const name = `js_${process.pid}_${names.length}`;
    await run([`${bin}/createdb`, ...at, name]);
    names.push(name);
    return `postgresql://postgres@127.0.0.1:${port}/${name}`;
  };
  return {
    url: await createDatabase(),
    createDatabase,
    async stop() {
      for (const name of names) await run([`${bin}/dropdb`, ...at, '--force', name]).catch(() => {});
    },
  };
}

// The store a Node suite runs on: by default RocksDB in each server's own data dir;
// JOBSTREAM_TEST_STORE=postgresql puts every server on a PostgreSQL the suite starts, so
// one suite covers both backends. flags(id) puts a server on the shared store (a server
// restarted under the same id is the same server); another() makes a store of its own and
// resolves to the same kind of flags(id) for it.
export async function openTestStore() {
  if (process.env.JOBSTREAM_TEST_STORE !== 'postgresql') {
    return { postgres: false, flags: () => [], another: async () => () => [], close: async () => {} };
  }
  const postgres = await startPostgres();
  if (!postgres) throw new Error('JOBSTREAM_TEST_STORE=postgresql needs Debian\'s postgresql-15');
  const on = (url, id) => [`--store=${url}`, `--server_id=${id}`];
  return {
    postgres: true,
    flags: (id) => on(postgres.url, id),
    async another() {
      const url = await postgres.createDatabase();
      return (id) => on(url, id);
    },
    close: () => postgres.stop(),
  };
}

function postgresIds() {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line.split(':');
  return [Number(uid), Number(gid)];
}

// A loopback port free now (for a server started later on a known address).
export function freePort() {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// Debian's chromium, headless, as the browser tests drive it (with `extraArgs`).
export async function launchChromium(extraArgs = []) {
  const { chromium } = await import('playwright-core');  // only the browser tests load it
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--disable-component-update', '--disable-sync', '--no-first-run', ...extraArgs],
  });
}
