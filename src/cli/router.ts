// `relay router`: the cloud service. The router's modules (Hono, BullMQ, minio...: ~0.6 s) are
// loaded when it starts, not when the command is registered (`relay --help`).
import type { Command } from 'commander';
import { routerConfig } from '../config.js';
import { exitWithError } from './fail.js';

export function register(program: Command): void {
  program
    .command('router')
    .description('run the router (the only open port): client API, connector event streams, result hand-off')
    .option('--port <n>', 'port to listen on (RELAY_PORT, default 8080)')
    .option('--host <addr>', 'address to bind (RELAY_HOST, default 0.0.0.0)')
    .option('--redis-url <url>', 'Redis URL (RELAY_REDIS_URL)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (RELAY_TLS_CERT; with --tls-key)')
    .option('--tls-key <file>', 'private key of --tls-cert, PEM (RELAY_TLS_KEY)')
    .action(async (opts: Record<string, unknown>) => {
      try {
        const cfg = routerConfig(opts);
        const [{ createLogger, exitAfterLogs }, { startRouter }] = await Promise.all([import('../log.js'), import('../router/server.js')]);
        const log = createLogger('router', cfg.logLevel);
        const router = await startRouter(cfg, log);
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          log.info({ signal }, 'shutting down');
          router.stop().then(
            () => exitAfterLogs(0),
            (err: unknown) => {
              log.error({ err }, 'shutdown failed');
              exitAfterLogs(1);
            },
          );
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
      } catch (err) {
        exitWithError(err);
      }
    });
}
