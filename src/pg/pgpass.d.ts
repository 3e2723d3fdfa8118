/** The password-file reader `pg` has used (no types of its own). */
declare module 'pgpass' {
  namespace pgpass {
    interface ConnectionInfo {
      host?: string;
      port?: number | string;
      database?: string;
      user?: string;
    }
  }
  /** Calls back with the password of the first matching line of the file, or undefined. */
  function pgpass(info: pgpass.ConnectionInfo, callback: (password: string | undefined) => void): void;
  export = pgpass;
}
