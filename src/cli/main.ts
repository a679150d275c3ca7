// The `relay` command: one file per sub-command, each exporting register(program).
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { register as registerRouter } from './router.js';
import { register as registerConnector } from './connector.js';
import { register as registerRequest } from './request.js';
import { register as registerAdmin } from './admin.js';
import { register as registerDemo } from './demo.js';
import { register as registerSampleData } from './sample-data.js';
import { register as registerStatus } from './status.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('relay')
  .description('Run commands on on-premise connectors and get the results back fast and intact')
  .version(pkg.version)
  .showHelpAfterError();

registerRouter(program);
registerConnector(program);
registerRequest(program);
registerAdmin(program);
registerDemo(program);
registerSampleData(program);
registerStatus(program);

await program.parseAsync(process.argv);
