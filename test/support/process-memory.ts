import { readFileSync } from 'node:fs';

/** A process's peak resident set size (VmHWM) and current one (VmRSS), in bytes, from /proc. */
export function processMemory(pid: number): { peakRss: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]) * 1024;
  };
  return { peakRss: kb('VmHWM'), rss: kb('VmRSS') };
}

/** Megabytes, one decimal, for messages. */
export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
