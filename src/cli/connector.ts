// `relay connector`: run the on-premise agent until SIGINT/SIGTERM. Its modules (DuckDB, pg,
// Arrow, Parquet...: ~0.6 s) are loaded when it starts, not when the command is registered.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, connectorConfig, type ConnectorConfig } from '../config.js';

export function register(program: Command): void {
  program
    .command('connector')
    .description('Run a connector: keep an event stream open to the router and answer its commands from the data directory')
    .option('--router <url>', 'router URL (RELAY_ROUTER_URL)')
    .option('--id <id>', 'connector id (RELAY_CONNECTOR_ID; default: the primary MAC address)')
    .option('--token <token>', 'connector token (RELAY_CONNECTOR_TOKEN; prefer the variable: flags show in ps)')
    .option('--data-dir <dir>', 'directory datasets are served from (RELAY_DATA_DIR)')
    .option('--concurrency <n>', 'commands run at once; more wait in a queue (RELAY_CONCURRENCY)')
    .option('--upload-parallel <n>', 'uploads in flight per command (RELAY_UPLOAD_PARALLEL)')
    .option('--zstd <mode>', 'auto: compress chunks only while measured faster; always: every chunk (RELAY_ZSTD)')
    .option('--metrics-port <n>', 'serve Prometheus metrics on this local port (RELAY_METRICS_PORT; 0 = any free port; default: off)')
    .option('--metrics-host <addr>', 'address for --metrics-port (RELAY_METRICS_HOST, default 127.0.0.1)')
    .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for the router and the object store (RELAY_CA_FILE)')
    .option(
      '--database <name=target>',
      'a database requests may run SQL on: NAME=postgres://user@host/db or NAME=duckdb (SQL over the data directory\'s files); repeatable, the first is the default (RELAY_DATABASES, comma-separated)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--sql-timeout <s>', 'statement timeout for SQL requests, in seconds (RELAY_SQL_TIMEOUT_S)')
    .action(async (opts: Record<string, unknown>) => {
      let cfg: ConnectorConfig;
      try {
        cfg = connectorConfig(opts);
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`relay connector: ${err.message}\n`);
          process.exit(2);
        }
        throw err;
      }
      const [{ createLogger, exitAfterLogs, fingerprint }, { startConnector }] = await Promise.all([import('../log.js'), import('../connector/connector.js')]);
      const log = createLogger('connector', cfg.logLevel);
      if (cfg.databases.some((d) => d.kind === 'duckdb')) {
        // DuckDB resolves relative file names (SELECT * FROM 'sales/x.csv') against the working
        // directory, and its sandbox only lets it read inside the data directory.
        cfg = { ...cfg, dataDir: resolve(cfg.dataDir) };
        try {
          process.chdir(cfg.dataDir);
        } catch (err) {
          process.stderr.write(`relay connector: cannot enter the data directory ${cfg.dataDir}: ${(err as Error).message}\n`);
          process.exit(2);
        }
      }
      log.debug({ tokenFingerprint: fingerprint(cfg.token) }, 'configuration read');
      const connector = await startConnector(cfg, log);

      let signals = 0;
      const shutdown = (signal: NodeJS.Signals) => {
        signals += 1;
        if (signals > 1) {
          log.warn({ signal }, 'second signal: exiting without waiting');
          process.exit(1);
        }
        log.info({ signal }, 'shutting down');
        connector.stop().then(
          () => exitAfterLogs(0),
          (err: unknown) => {
            log.error({ err: (err as Error).message }, 'error while stopping');
            exitAfterLogs(1);
          },
        );
      };
      process.on('SIGINT', shutdown);
      process.on('SIGTERM', shutdown);
    });
}
