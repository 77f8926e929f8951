import type { Command } from 'commander';
import { action, settingsHelp } from './context.ts';
import { settings } from '../config/settings.ts';
import { ExitCode, usageError } from '../errors.ts';
import { log } from '../log.ts';

/**
 * `walship daemon` (run) and `walship daemon status`. The repository-wide `walship status` is a
 * separate command (another layer's); the daemon's own is a subcommand here.
 */
export function register(program: Command): void {
  const daemon = program
    .command('daemon')
    .description('long-lived process on a unix socket: takes over wal-push/wal-fetch, archives ready WAL ahead of PostgreSQL, prefetches, serves Prometheus /metrics');

  daemon
    .command('run', { isDefault: true })
    .description('run the daemon in the foreground (SIGTERM finishes in-flight uploads, then exits 0)')
    .option('--socket <path>', 'unix socket to listen on (WALSHIP_DAEMON_SOCKET)')
    .option('--metrics-address <host:port>', "where to serve /metrics, or 'off' (WALSHIP_METRICS_ADDRESS)")
    .option('--pgdata <dir>', 'data directory whose pg_wal/archive_status is watched: ready WAL is archived as soon as it appears (PGDATA)')
    .addHelpText(
      'after',
      settingsHelp(
        ['daemonSocket', 'metricsAddress', 'pgdata', 'storage', 'compression', 'compressionLevel', 'recipients', 'recipientsFile', 'identityFile', 'passphraseFile', 'uploadConcurrency', 'downloadConcurrency', 'prefetch', 'storageTimeout', 'logFormat', 'logLevel'],
        settings,
      ),
    )
    .action(
      action(
        'daemon',
        async (ctx) => {
          const config = ctx.config;
          if (!config.daemonSocket) throw usageError(`setting daemonSocket (${settings.daemonSocket.env}) is not set: give the unix socket path (--socket)`);
          const metricsAddress = config.metricsAddress === 'off' ? undefined : config.metricsAddress;
          if (metricsAddress) {
            const { parseAddress } = await import('../daemon/metrics.ts');
            try {
              parseAddress(metricsAddress);
            } catch (err) {
              throw usageError(`setting metricsAddress (${settings.metricsAddress.env}): ${(err as Error).message}`);
            }
          }
          const { startDaemon } = await import('../daemon/server.ts');
          const { configFingerprint } = await import('../daemon/protocol.ts');
          const { destinationTag } = await import('../wal/lookahead.ts');
          const storage = await ctx.storage();
          const encryption = await ctx.encryption();
          const running = await startDaemon({
            socketPath: config.daemonSocket,
            metricsAddress,
            fingerprint: configFingerprint(config),
            markerTag: destinationTag(ctx.configArg),
            push: { storage, encode: await ctx.encodeOptions(), encryption, allowUnencrypted: config.allowUnencrypted, wholeFile: true },
            fetch: { storage, encryption, wholeFile: true },
            pgdata: config.pgdata,
            uploadConcurrency: config.uploadConcurrency,
            downloadConcurrency: config.downloadConcurrency,
            prefetch: config.prefetch,
          });
          for (const signal of ['SIGTERM', 'SIGINT'] as const) {
            process.once(signal, () => {
              log.info(`${signal}: stopping`);
              void running.shutdown();
            });
          }
          await running.closed;
          log.info('stopped');
        },
        {
          overrides: (flags) => ({
            daemonSocket: flags.socket,
            metricsAddress: flags.metricsAddress,
            pgdata: flags.pgdata,
          }),
        },
      ),
    );

  daemon
    .command('status')
    .description("the running daemon's counters (exit 1 when no daemon answers on the socket)")
    .option('--socket <path>', 'unix socket of the daemon (WALSHIP_DAEMON_SOCKET)')
    .option('--json', 'print the status as JSON')
    .action(
      action(
        'daemon status',
        async (ctx) => {
          const socket = ctx.config.daemonSocket;
          if (!socket) throw usageError(`setting daemonSocket (${settings.daemonSocket.env}) is not set: give the unix socket path (--socket)`);
          const { askDaemon } = await import('../daemon/client.ts');
          const answer = await askDaemon(socket, { op: 'status' }, { timeoutMs: 5000 });
          if (!answer?.ok || !answer.status) {
            log.error(`no walship daemon answers on ${socket}`);
            return ExitCode.notFound;
          }
          const flags = daemon.commands.find((c) => c.name() === 'status')!.opts();
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(answer.status, null, 2)}\n`);
          } else {
            const s = answer.status;
            const lines = [
              `walship daemon ${s.version}, pid ${s.pid}, up since ${s.startedAt}`,
              `socket   ${s.socket}`,
              `metrics  ${s.metrics ?? 'off'}`,
              `storage  ${s.storage}`,
              `pgdata   ${s.pgdata ?? '(none: no continuous archiving)'}`,
              `pushed   ${s.pushed} files, ${s.pushedBytes} bytes${s.lastPushAt ? `, last ${s.lastPushAt}` : ''}`,
              `fetched  ${s.fetched} files, ${s.fetchedBytes} bytes${s.lastFetchAt ? `, last ${s.lastFetchAt}` : ''}`,
              `failures ${s.failures}`,
              `now      ${s.inFlight} in flight, ${s.queued} ready files waiting`,
            ];
            process.stdout.write(`${lines.join('\n')}\n`);
          }
        },
        { overrides: (flags) => ({ daemonSocket: flags.socket }) },
      ),
    );
}
