// Starts the real jobstream-server on 127.0.0.1 with a free port and a temp data dir, and
// removes both when stopped. Shared by the Node tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN_DIR = process.env.JOBSTREAM_BIN_DIR ?? path.join(ROOT, 'build');

export async function startServer(flags = []) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'jobstream-js-'));
  const child = spawn(path.join(BIN_DIR, 'server/jobstream-server'),
    ['--listen=127.0.0.1:0', `--data_dir=${dataDir}`, ...flags],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const match = /^listening on (\S+)$/.exec(first);
  if (!match) throw new Error(`unexpected first line: ${first}`);
  return {
    address: match[1],
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const code = await exited;
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}
