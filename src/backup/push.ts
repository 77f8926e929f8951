import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { releaseBuffer } from '../buffers.ts';
import { encodeObject, type EncodeOptions } from '../codec/codec.ts';
import { postgresError, refusedError, usageError } from '../errors.ts';
import { log } from '../log.ts';
import { parseBackupLabel } from '../pg/backup-label.ts';
import { controlFilePath, parseControlFile, tablespaceVersionDirectory } from '../pg/control-file.ts';
import { checkPage, pageLsn, relationSegment } from '../pg/page-checksum.ts';
import { PgSession, type ConnectionSettings, type ServerInfo } from '../pg/session.ts';
import { formatLsn, segmentFileName, segmentOfLsn } from '../pg/wal-names.ts';
import { checkRepositoryEncryption, claimRepository, keys } from '../repository.ts';
import { encryptionRecord } from '../codec/keys.ts';
import type { Storage } from '../storage/storage.ts';
import { version } from '../version.ts';
import { manifestFormat, summaryOf, validBackupName, writeManifest, type BackupManifest, type ChecksumFailure, type ManifestEntry, type ManifestPart } from './manifest.ts';
import { formatBytes, mibPerSecond, startProgress, type Progress } from './progress.ts';
import { endOfArchive, padding, tarHeader } from './tar.ts';
import { walkDataDirectory, type WalkEntry } from './walk.ts';

export interface BackupPushOptions {
  storage: Storage;
  encode: EncodeOptions;
  connection: ConnectionSettings;
  /** PGDATA; defaults to the server's data_directory. */
  pgdata?: string | undefined;
  fast: boolean;
  verifyChecksums: boolean;
  permanent: boolean;
  /** Backup name instead of base_<start segment>. */
  name?: string | undefined;
  partSize: number;
  uploadConcurrency: number;
  archiveTimeoutMs: number;
  /** Store unencrypted even into a repository walship.json records as encrypted. */
  allowUnencrypted?: boolean | undefined;
}

const readChunk = 1 << 20;

/**
 * Take an online base backup of the local cluster into the repository:
 * pg_backup_start → stream PGDATA and tablespaces as tar parts (parallel, through the codec) →
 * pg_backup_stop → the label part → wait until the stop segment is archived → summary → manifest.
 */
export async function pushBackup(options: BackupPushOptions): Promise<BackupManifest> {
  const started = Date.now();
  const session = await PgSession.connect(options.connection, 'walship backup-push');
  let progress: Progress | undefined;
  try {
    const server = await session.serverInfo();
    PgSession.checkSupported(server);
    if (server.inRecovery) throw refusedError(`the server (${session.where}) is a standby; backup-push backs up a primary`);
    if (server.archiveMode === 'off') {
      throw refusedError(`archive_mode is off on the server (${session.where}): a base backup is useless without archived WAL; set archive_mode = on and archive_command = 'walship wal-push %p'`);
    }
    const pgdata = resolve(options.pgdata ?? server.dataDirectory ?? '');
    if (!options.pgdata && !server.dataDirectory) throw usageError('setting pgdata (PGDATA) is not set and the server did not tell its data_directory');
    const control = await readControlFile(pgdata);
    if (control.systemIdentifier !== server.systemIdentifier) {
      throw usageError(`PGDATA ${pgdata} belongs to database system ${control.systemIdentifier}, but the server at ${session.where} is ${server.systemIdentifier}: point PGDATA and PGHOST/PGPORT at the same cluster`);
    }
    // Encryption: walship.json records it at first write; an unencrypted backup into an encrypted repository is refused.
    const writing = encryptionRecord(options.encode.encryption);
    const info = await claimRepository(options.storage, { systemIdentifier: server.systemIdentifier, pgMajor: server.major }, { encryption: writing });
    await checkRepositoryEncryption(options.storage, info, writing, { allowUnencrypted: options.allowUnencrypted });
    if (options.name !== undefined) {
      if (!validBackupName(options.name)) throw usageError(`--name ${JSON.stringify(options.name)}: use letters, digits, '_', '-' and '.' (not LATEST)`);
      await refuseExisting(options.storage, options.name);
    }

    if (!(await session.tryLockBackup())) throw refusedError(`another walship backup-push is running against this cluster (${session.where}); one at a time`);
    if (!options.fast) log.info('starting the backup after a spread checkpoint, as PostgreSQL paces it (checkpoint_completion_target); --fast checkpoints at once');
    const start = await session.startBackup(options.name ?? 'walship backup-push', options.fast);
    const timeline = await session.timeline();
    const startWalFile = segmentFileName(timeline, segmentOfLsn(start.lsn, server.walSegmentSize), server.walSegmentSize);
    const name = options.name ?? `base_${startWalFile}`;
    if (options.name === undefined) await refuseExisting(options.storage, name);
    await removeLeftovers(options.storage, name);
    log.info('backup started', { backup: name, start_lsn: formatLsn(start.lsn), timeline });

    if (options.verifyChecksums && !server.dataChecksums) log.warn('--verify-checksums: the cluster has data checksums off; there are no page checksums to verify');
    const walk = await walkDataDirectory(pgdata, { tablespaceVersionDirectory: tablespaceVersionDirectory(server.major, control.catalogVersion) });
    const total = walk.entries.reduce((sum, e) => sum + e.size, 0);
    progress = await startProgress(`backup ${name}`, total);
    const writer = new PartWriter({ ...options, name, server, startLsn: start.lsn, progress });
    await writer.writeAll(walk.entries);

    const stop = await session.stopBackup();
    const label = parseBackupLabel(stop.labelFile);
    if (label.startLsn !== start.lsn || label.timeline !== timeline) {
      throw postgresError(`backup_label from pg_backup_stop (start ${formatLsn(label.startLsn)}, timeline ${label.timeline}) does not match pg_backup_start (${formatLsn(start.lsn)}, timeline ${timeline})`);
    }
    await writer.writeLabelPart(stop.labelFile, stop.tablespaceMapFile, Math.floor(stop.time.getTime() / 1000));
    progress.stop();
    progress = undefined;

    const stopWalFile = segmentFileName(timeline, segmentOfLsn(stop.lsn - 1n, server.walSegmentSize), server.walSegmentSize);
    log.info('backup stopped; waiting for the stop segment to be archived', { backup: name, stop_lsn: formatLsn(stop.lsn), segment: stopWalFile });
    await waitForArchive(options.storage, session, stopWalFile, options.archiveTimeoutMs);

    const files = writer.entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const size = files.reduce((sum, f) => sum + (f.size ?? 0), 0);
    const parts = writer.parts.sort((a, b) => a.number - b.number);
    const manifest: BackupManifest = {
      format: manifestFormat,
      name,
      walshipVersion: version,
      pgVersion: server.versionNum,
      pgMajor: server.major,
      systemIdentifier: server.systemIdentifier.toString(),
      timeline,
      startLsn: formatLsn(start.lsn),
      stopLsn: formatLsn(stop.lsn),
      startWalFile,
      stopWalFile,
      startTime: start.time.toISOString(),
      stopTime: stop.time.toISOString(),
      walSegmentSize: server.walSegmentSize,
      blockSize: server.blockSize,
      dataChecksums: server.dataChecksums,
      codec: { compression: options.encode.compression, level: options.encode.level, encrypted: Boolean(options.encode.encryption?.encrypt) },
      permanent: options.permanent,
      label: label.label,
      backupLabel: stop.labelFile,
      tablespaceMap: stop.tablespaceMapFile,
      tablespaces: walk.tablespaces,
      size,
      storedSize: parts.reduce((sum, p) => sum + p.storedSize, 0),
      durationMs: Date.now() - started,
      verifyChecksums: options.verifyChecksums,
      checksumFailures: writer.checksumFailures,
      parts,
      files,
    };
    // The summary first, the manifest last: its presence is what makes the backup complete.
    await options.storage.put(keys.backupSummary(name), Buffer.from(`${JSON.stringify(summaryOf(manifest), null, 2)}\n`));
    await writeManifest(options.storage, manifest, options.encode);
    const ratio = size > 0 ? ` (${((manifest.storedSize / size) * 100).toFixed(1)}%)` : '';
    log.info(
      `backup ${name} complete: ${formatBytes(size)} in ${(manifest.durationMs / 1000).toFixed(1)} s (${mibPerSecond(size, manifest.durationMs)} MiB/s), stored ${formatBytes(manifest.storedSize)}${ratio} in ${parts.length} part${parts.length === 1 ? '' : 's'}`,
      manifest.checksumFailures.length ? { checksum_failures: manifest.checksumFailures.length } : undefined,
    );
    return manifest;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e?.syscall === undefined || typeof e.code !== 'string') throw err;
    // A local file the backup could not read (permissions, I/O error): one line naming it.
    const reason = e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied (run backup-push as the owner of the data directory)' : e.code === 'EIO' ? 'I/O error' : e.message;
    throw usageError(`cannot read ${e.path ?? 'a file of the data directory'}: ${reason}; no backup was made`);
  } finally {
    progress?.stop();
    // Closing the session without pg_backup_stop makes the server abort the backup.
    await session.close();
  }
}

async function readControlFile(pgdata: string) {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(pgdata, controlFilePath));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usageError(`PGDATA ${pgdata} is not a PostgreSQL data directory (cannot read ${controlFilePath}: ${code ?? (err as Error).message})`);
  }
  const control = parseControlFile(bytes);
  if (!control) throw usageError(`${join(pgdata, controlFilePath)}: not a PostgreSQL control file`);
  return control;
}

async function refuseExisting(storage: Storage, name: string): Promise<void> {
  if (await storage.head(keys.backupManifest(name))) throw refusedError(`backup ${name} already exists in ${storage.location}`);
}

/** Parts of an interrupted backup-push under the same name are garbage: remove them before reusing the name. */
async function removeLeftovers(storage: Storage, name: string): Promise<void> {
  const stale: string[] = [];
  for await (const object of storage.list(keys.backupPrefix(name))) stale.push(object.key);
  if (stale.length === 0) return;
  log.info('removing the objects of an interrupted backup with the same name', { backup: name, objects: stale.length });
  await storage.delete(stale);
}

/** Poll the repository for the stop segment; on timeout explain what the archiver says. */
async function waitForArchive(storage: Storage, session: PgSession, walFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 100;
  for (;;) {
    if (await storage.head(keys.wal(walFile))) return;
    if (Date.now() >= deadline) {
      const status = await session.archiverStatus().catch(() => undefined);
      const failing = status?.lastFailed ? `; the archiver's last failure was ${status.lastFailed} at ${status.lastFailedTime?.toISOString()} (see the PostgreSQL log)` : '';
      throw postgresError(
        `the backup's stop segment ${walFile} did not reach ${storage.location} within ${Math.round(timeoutMs / 1000)} s: is archive_command = 'walship wal-push %p' working${failing}? The backup is not complete (setting archiveTimeout, WALSHIP_ARCHIVE_TIMEOUT)`,
      );
    }
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
    delay = Math.min(delay * 2, 2000);
  }
}

interface PartWriterOptions extends BackupPushOptions {
  name: string;
  server: ServerInfo;
  startLsn: bigint;
  progress: Progress;
}

/**
 * Streams walked entries into tar parts: `uploadConcurrency` workers each take the next entry from
 * one shared queue and append it to their current part, which flows through the codec into storage
 * while it is written (bounded memory). A part ends after the entry that makes it reach partSize.
 */
class PartWriter {
  readonly entries: ManifestEntry[] = [];
  readonly parts: ManifestPart[] = [];
  readonly checksumFailures: ChecksumFailure[] = [];
  readonly #o: PartWriterOptions;
  #queue: WalkEntry[] = [];
  #next = 0;
  #partNumbers = 0;
  #failure: unknown;
  #encode: EncodeOptions;
  /** File chunks read here, nowhere else referenced once the codec has them (tar headers and padding are not here). */
  readonly #readBuffers = new WeakSet<Buffer>();

  constructor(options: PartWriterOptions) {
    this.#o = options;
    this.#encode = options.encode;
  }

  async writeAll(entries: WalkEntry[]): Promise<void> {
    this.#queue = entries;
    this.#next = 0;
    const uploads = Math.max(1, this.#o.uploadConcurrency);
    // lz4 parts: frames are made on threads of walship's own (see Lz4FrameThreads), one per core at
    // most, one frame per part at a time (the parts run side by side), and each file chunk read is
    // freed once the encoder has copied it (lz4 keeps none). Without lz4's content checksum: every
    // file in a part has its SHA-256 in the manifest, which backup-fetch checks; the checksum was
    // more than half of lz4-napi's decoding time (512 MiB in 4 MiB frames: 230 -> 100 ms).
    const threads =
      this.#o.encode.compression === 'lz4' ? new (await import('../codec/lz4-threads.ts')).Lz4FrameThreads(Math.min(uploads, availableParallelism()), { contentChecksum: false }) : undefined;
    const copied = (chunk: Buffer) => {
      if (this.#readBuffers.delete(chunk)) releaseBuffer(chunk);
    };
    this.#encode = threads ? { ...this.#o.encode, lz4: { compress: threads.compress, copied, framesInFlight: 1 } } : this.#o.encode;
    try {
      await Promise.allSettled(Array.from({ length: uploads }, () => this.#worker()));
    } finally {
      this.#encode = this.#o.encode;
      await threads?.close();
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** The last part: backup_label and tablespace_map, so `tar -x` of all parts gives a startable data directory. */
  async writeLabelPart(labelFile: string, tablespaceMap: string, mtime: number): Promise<void> {
    const number = ++this.#partNumbers;
    const files: [string, string][] = [['backup_label', labelFile]];
    if (tablespaceMap) files.push(['tablespace_map', tablespaceMap]);
    const entries = this.entries;
    const chunks: Buffer[] = [];
    for (const [path, text] of files) {
      const bytes = Buffer.from(text, 'utf8');
      chunks.push(tarHeader({ name: path, type: 'file', size: bytes.length, mode: 0o600, mtime }), bytes, padding(bytes.length));
      entries.push({ path, type: 'file', mode: 0o600, mtime, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), part: number });
    }
    chunks.push(endOfArchive);
    await this.#upload(number, (async function* () {
      yield* chunks;
    })(), files.length);
  }

  #take(): WalkEntry | undefined {
    if (this.#failure !== undefined) return undefined;
    return this.#queue[this.#next++];
  }

  async #worker(): Promise<void> {
    try {
      for (;;) {
        const first = this.#take();
        if (!first) return;
        const number = ++this.#partNumbers;
        const counter = { files: 0 };
        await this.#upload(number, this.#partContent(first, number, counter), counter);
      }
    } catch (err) {
      this.#failure ??= err;
    }
  }

  async #upload(number: number, content: AsyncGenerator<Buffer>, files: number | { files: number }): Promise<void> {
    let size = 0;
    let storedSize = 0;
    const source = Readable.from(
      (async function* () {
        for await (const chunk of content) {
          size += chunk.length;
          yield chunk;
        }
      })(),
      { objectMode: false, highWaterMark: readChunk },
    );
    const encoded = await encodeObject(source, this.#encode);
    // Counted through a generator: composing another Transform onto the codec's composed stream makes
    // Node emit an unhandled AbortError when a small object ends (readable done, writable side not).
    const counted = Readable.from(
      (async function* () {
        for await (const chunk of encoded) {
          storedSize += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
      })(),
      { objectMode: false, highWaterMark: readChunk },
    );
    await this.#o.storage.put(keys.backupPart(this.#o.name, number), counted);
    const fileCount = typeof files === 'number' ? files : files.files;
    this.parts.push({ number, size, storedSize, files: fileCount });
    log.debug('part stored', { backup: this.#o.name, part: number, bytes: size, stored: storedSize, files: fileCount });
  }

  async *#partContent(first: WalkEntry, number: number, counter: { files: number }): AsyncGenerator<Buffer> {
    let size = 0;
    for (let entry: WalkEntry | undefined = first; entry; entry = size >= this.#o.partSize ? undefined : this.#take()) {
      if (this.#failure !== undefined) throw new Error('backup aborted');
      if (entry.type === 'dir') {
        const header = tarHeader({ name: entry.path, type: 'dir', size: 0, mode: entry.mode, mtime: entry.mtime });
        size += header.length;
        yield header;
        this.entries.push({ path: entry.path, type: 'dir', mode: entry.mode, mtime: entry.mtime });
        continue;
      }
      for await (const chunk of this.#fileContent(entry, number, counter)) {
        size += chunk.length;
        yield chunk;
      }
    }
    yield endOfArchive;
  }

  /** One file as a tar entry. A file that vanished is left out; one that shrank is zero-padded in the tar and recorded with the size actually read. */
  async *#fileContent(entry: WalkEntry, part: number, counter: { files: number }): AsyncGenerator<Buffer> {
    let handle;
    try {
      handle = await open(entry.source, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        log.debug('file vanished before it was read (normal: WAL replay recreates it if needed)', { path: entry.path });
        return;
      }
      throw err;
    }
    try {
      const st = await handle.stat();
      const size = st.size;
      const mtime = Math.floor(st.mtimeMs / 1000);
      yield tarHeader({ name: entry.path, type: 'file', size, mode: st.mode & 0o7777, mtime, uid: st.uid, gid: st.gid });
      const hash = createHash('sha256');
      const segment = this.#o.verifyChecksums && this.#o.server.dataChecksums ? relationSegment(entry.path) : undefined;
      let offset = 0;
      while (offset < size) {
        const want = Math.min(readChunk, size - offset);
        const chunk = Buffer.allocUnsafe(want);
        let got = 0;
        while (got < want) {
          const { bytesRead } = await handle.read(chunk, got, want - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got === 0) break;
        if (this.#failure !== undefined) throw new Error('backup aborted');
        const data = got === want ? chunk : chunk.subarray(0, got);
        this.#readBuffers.add(data);
        hash.update(data);
        if (segment !== undefined) await this.#verifyPages(entry.path, handle, data, offset, segment);
        offset += got;
        this.#o.progress.add(got);
        yield data;
        if (got < want) break;
      }
      if (offset < size) {
        log.debug('file shrank while it was read (normal: WAL replay fixes it)', { path: entry.path, expected: size, read: offset });
        for (let pad = size - offset; pad > 0; pad -= readChunk) yield Buffer.alloc(Math.min(pad, readChunk));
      }
      yield padding(size);
      counter.files++;
      this.entries.push({ path: entry.path, type: 'file', mode: st.mode & 0o7777, mtime, size: offset, sha256: hash.digest('hex'), part });
    } finally {
      await handle.close();
    }
  }

  /**
   * Data page checksums, as pg_basebackup checks them: pages changed since the backup started
   * (LSN at or after its start) are skipped, since WAL replay rewrites them; a failing page is read
   * again once, in case the first read raced with a write (a torn page).
   */
  async #verifyPages(path: string, handle: import('node:fs/promises').FileHandle, data: Buffer, offset: number, segment: number): Promise<void> {
    const block = this.#o.server.blockSize;
    for (let at = 0; at + block <= data.length; at += block) {
      let page = data.subarray(at, at + block);
      const blockNumber = segment * this.#o.server.relationSegmentBlocks + (offset + at) / block;
      if (pageLsn(page) >= this.#o.startLsn) continue;
      let check = checkPage(page, blockNumber);
      if (check.ok) continue;
      page = Buffer.alloc(block);
      const { bytesRead } = await handle.read(page, 0, block, offset + at);
      if (bytesRead < block || pageLsn(page) >= this.#o.startLsn) continue;
      check = checkPage(page, blockNumber);
      if (check.ok) continue;
      log.warn('data page checksum failure', { path, block: blockNumber, expected: check.expected, stored: check.actual });
      this.checksumFailures.push({ path, block: blockNumber, expected: check.expected, actual: check.actual });
    }
  }
}

