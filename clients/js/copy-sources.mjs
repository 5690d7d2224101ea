// Copies what the package needs from the jobstream tree into it (never committed: see
// .gitignore): the API's .proto files, and the browser module the gateway serves as
// /static/jobstream.js (re-exported as "jobstream/browser" for bundlers). Run by npm on
// install in this folder and before packing, so a packed jobstream is whole.
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
if (!existsSync(path.join(root, 'proto', 'jobstream', 'v1'))) {
  // Installed from a packed tarball: the copies came with it.
  process.exit(0);
}
rmSync(path.join(here, 'proto'), { recursive: true, force: true });
mkdirSync(path.join(here, 'proto'), { recursive: true });
cpSync(path.join(root, 'proto', 'jobstream'), path.join(here, 'proto', 'jobstream'), { recursive: true,
  filter: (p) => !/\.(cc|h)$/.test(p) });
mkdirSync(path.join(here, 'browser'), { recursive: true });
cpSync(path.join(root, 'gateway', 'web', 'jobstream.js'), path.join(here, 'browser', 'jobstream.js'));
