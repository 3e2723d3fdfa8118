import type pg from 'pg';
import replication from 'pg-logical-replication';
import type { Logger } from '../observability/logger.js';
import { PgferryError, ErrorCodes } from '../errors.js';
import { formatLsn, type Lsn } from '../protocol/lsn.js';
import { PgoutputDecoder, type PgoutputMessage } from '../protocol/pgoutput.js';
import { CopyDataSplitter } from '../protocol/copy-data.js';
import { encodeStandbyStatus } from '../protocol/standby-status.js';
import { startReplicationSql } from './slot.js';

const { LogicalReplicationService } = replication;

/** What the stream delivers, in exactly the order the server sent it. */
export type StreamEvent =
  /**
   * `at`: the XLogData message's WAL start, read only for Stream Start, where the server puts the
   * streamed transaction's first change.
   */
  | { kind: 'message'; message: PgoutputMessage; bytes: number; at?: Lsn }
  | { kind: 'keepalive'; walEnd: Lsn; replyRequested: boolean };

/**
 * The only place that talks to `pg-logical-replication`. It is configured so that it never
 * acknowledges anything by itself (no auto-ack, no keepalive timer): the caller decides every
 * confirmed position through {@link ReplicationStream.confirm}, and keepalives are handed to the
 * caller in stream order, interleaved with the data, so "nothing in flight" can be judged exactly.
 */
export class ReplicationStream {
  private readonly service: InstanceType<typeof LogicalReplicationService>;
  private stopping = false;

  constructor(
    config: pg.ClientConfig,
    private readonly slot: string,
    private readonly publication: string,
    private readonly log: Logger,
    /** Also stream logical decoding messages (captured DDL). */
    private readonly messages = false,
    /**
     * Ask for large transactions while they run (see {@link startReplicationSql}): a transaction is
     * streamed once it outgrows the walsender's `logical_decoding_work_mem` (the source's setting,
     * 64MB by default, or the source URL's `options`), where it would otherwise spill to disk.
     */
    private readonly streaming = false,
  ) {
    this.service = new LogicalReplicationService(config, { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } });
  }

  /**
   * Streams from `startLsn` until {@link stop} (resolves) or a failure (rejects). `onEvent` is
   * called synchronously for each event; a decode failure rejects the run instead of skipping data.
   */
  run(startLsn: Lsn, onEvent: (e: StreamEvent) => void): Promise<void> {
    const decoder = new PgoutputDecoder(this.streaming ? 2 : 1);
    let failure: unknown = null;
    const fail = (err: unknown): void => {
      if (failure) return;
      failure = err;
      void this.service.stop();
    };
    /**
     * One CopyData message of the replication stream: XLogData ('w': start, end and send time,
     * then the pgoutput payload) or a primary keepalive ('k': WAL end, send time, reply flag).
     * Read here rather than by the library, which would build an LSN string and a promise per
     * message and only log an unknown message.
     */
    const onCopyData = (buf: Buffer, start: number, end: number): void => {
      if (failure) return;
      try {
        const length = end - start;
        if (buf[start] === 0x77 && length >= 25) {
          const message = decoder.decode(buf, start + 25, end);
          if (message.tag === 'streamStart') onEvent({ kind: 'message', message, bytes: length - 25, at: buf.readBigUInt64BE(start + 1) });
          else onEvent({ kind: 'message', message, bytes: length - 25 });
        } else if (buf[start] === 0x6b && length >= 18) {
          onEvent({ kind: 'keepalive', walEnd: buf.readBigUInt64BE(start + 1), replyRequested: buf[start + 17] !== 0 });
        } else {
          throw new PgferryError(ErrorCodes.PROTOCOL, `source: unexpected replication message 0x${(buf[start] ?? 0).toString(16)} of ${length} bytes`);
        }
      } catch (err) {
        fail(err);
      }
    };
    const plugin = {
      name: 'pgoutput',
      options: {},
      start: (client: pg.Client, slotName: string, lsn: string) => {
        // CopyData is taken off the socket before `pg` parses it; every other message (the
        // CopyBothResponse, errors, the end of the stream) still reaches `pg` unchanged and in order.
        const socket = (client as unknown as { connection: { stream: NodeJS.EventEmitter } }).connection.stream;
        const parse = socket.listeners('data') as ((b: Buffer) => void)[];
        const splitter = new CopyDataSplitter(onCopyData, (other) => {
          for (const l of parse) l.call(socket, other);
        });
        socket.removeAllListeners('data');
        socket.on('data', (chunk: Buffer) => {
          try {
            splitter.push(chunk);
          } catch (err) {
            fail(new PgferryError(ErrorCodes.PROTOCOL, `source: malformed replication stream (${(err as Error).message})`));
          }
        });
        return client.query(startReplicationSql(slotName, this.publication, lsn, { messages: this.messages, streaming: this.streaming }));
      },
      parse: () => undefined, // never called: CopyData never reaches the library
    };
    return new Promise<void>((resolve, reject) => {
      this.service.removeAllListeners();
      this.service.on('error', (err: unknown) => {
        failure ??= err;
      });
      this.log.info({ slot: this.slot, startLsn: formatLsn(startLsn) }, 'starting replication');
      this.service
        .subscribe(plugin as never, this.slot, formatLsn(startLsn))
        .then(() => {
          if (failure) reject(failure);
          else if (this.stopping) resolve();
          else reject(new PgferryError(ErrorCodes.CONNECTION, 'source: replication stream ended unexpectedly', { retryable: true }));
        })
        .catch((err: unknown) => (this.stopping && !failure ? resolve() : reject(failure ?? err)));
    });
  }

  /**
   * Reports `flush` as written, flushed and applied. Callers pass only positions whose changes
   * are durably committed on the target (or hold nothing to apply): the server may then recycle
   * the WAL before it and never resends a transaction that ends at or before it.
   */
  confirm(flush: Lsn, replyRequested = false): void {
    const connection = (this.service as unknown as { _connection: { sendCopyFromChunk(b: Buffer): void } | null })._connection;
    connection?.sendCopyFromChunk(encodeStandbyStatus({ write: flush, flush, apply: flush, nowMs: Date.now(), replyRequested }));
  }

  /** Stops reading from the socket (backpressure); the server buffers, nothing is lost. */
  pause(): void {
    this.socket()?.pause();
  }

  resume(): void {
    this.socket()?.resume();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.service.stop();
  }

  private socket(): { pause(): void; resume(): void } | undefined {
    return (this.service as unknown as { _connection: { stream?: { pause(): void; resume(): void } } | null })._connection?.stream;
  }
}
