import type { Socket } from 'node:net';
import type pg from 'pg';
import { PgferryError, ErrorCodes } from '../errors.js';
import { CopyDataSplitter } from '../protocol/copy-data.js';

/** The parts of `pg`'s connection a COPY forward drives. */
interface Connection {
  stream: Socket;
  query(text: string): void;
  sendCopyFail(message: string): void;
}

const COPY_DONE = Buffer.from([0x63, 0, 0, 0, 4]);

function copyCount(msg: { text?: string } | undefined): number | null {
  const m = /^COPY (\d+)$/.exec(msg?.text ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * Runs `copyOut` (`COPY ... TO STDOUT`) on `source` into `copyIn` (`COPY ... FROM STDIN`) on
 * `target`, writing the source's CopyData messages to the target's socket exactly as they
 * arrive: both directions frame COPY data the same way, so the bytes are neither parsed nor
 * re-framed. Everything else the source sends (CopyOutResponse, CommandComplete, errors) still
 * goes through `pg`. Resolves with the row count once the target's COPY completed and both
 * commands report the same count.
 *
 * Settles only when the target connection is usable again: a failed source makes the target's
 * COPY fail (CopyFail); after a failed target the rest of the source's data is read and dropped
 * while the source command runs to its end. `onData` sees each run of CopyData messages
 * forwarded (one message per row, in practice).
 */
export function forwardCopy(source: pg.Client, target: pg.Client, copyOut: string, copyIn: string, onData: (messages: number, bytes: number) => void): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let failed = false;
    let sourceError: unknown = null;
    let sourceRows: number | null = null;
    /** The target, while it is in COPY FROM STDIN and wants more data. */
    let copying: Connection | null = null;

    const sourceQuery = {
      /** Hands the socket back to `pg` once the current push is processed (set on submit). */
      release: () => {},
      submit(connection: Connection): void {
        const socket = connection.stream;
        const parse = socket.listeners('data') as ((b: Buffer) => void)[];
        let releasing = false;
        let paused = false;
        const splitter = new CopyDataSplitter(
          (buf, start, end, messages) => {
            if (!copying) return; // the target failed: drop the rest
            const frames = buf.subarray(start, end);
            onData(messages, frames.length);
            if (!copying.stream.write(frames) && !paused) {
              paused = true;
              socket.pause();
              copying.stream.once('drain', () => {
                paused = false;
                socket.resume();
              });
            }
          },
          (other) => {
            for (const l of parse) l.call(socket, other);
          },
          true,
        );
        const onSocketData = (chunk: Buffer): void => {
          try {
            splitter.push(chunk);
          } catch (err) {
            socket.destroy(new PgferryError(ErrorCodes.PROTOCOL, `source: malformed COPY stream (${(err as Error).message})`));
            return;
          }
          if (!releasing) return;
          socket.removeListener('data', onSocketData);
          for (const l of parse) socket.on('data', l);
          const rest = splitter.takeRest();
          if (rest) for (const l of parse) l.call(socket, rest);
          if (paused) socket.resume();
        };
        sourceQuery.release = () => (releasing = true);
        socket.removeAllListeners('data');
        socket.on('data', onSocketData);
        connection.query(copyOut);
      },
      handleCommandComplete(msg: { text?: string }): void {
        sourceRows = copyCount(msg);
      },
      handleError(err: unknown): void {
        // `pg` reports it to nobody else: the target's COPY fails, and that settles with it.
        sourceError = err;
        sourceQuery.release();
        copying?.sendCopyFail('pgferry: the source COPY failed');
        copying = null;
      },
      handleReadyForQuery(): void {
        sourceQuery.release();
        copying?.stream.write(COPY_DONE);
        copying = null;
      },
    };

    const targetQuery = {
      submit(connection: Connection): void {
        connection.query(copyIn);
      },
      handleCopyInResponse(connection: Connection): void {
        copying = connection;
        source.query(sourceQuery as never);
      },
      handleCommandComplete(msg: { text?: string }): void {
        const rows = copyCount(msg);
        if (rows === null || rows !== sourceRows) {
          failed = true;
          reject(new PgferryError(ErrorCodes.COPY, `source sent ${sourceRows ?? 'an unknown number of'} rows, target stored ${rows ?? 'an unknown number'}`));
        }
      },
      handleError(err: unknown): void {
        failed = true;
        copying = null;
        reject(sourceError ?? err);
      },
      handleReadyForQuery(): void {
        if (!failed) resolve(sourceRows!);
      },
    };
    target.query(targetQuery as never);
  });
}
