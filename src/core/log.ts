import { systemClock } from './clock.js';

/**
 * Minimal leveled logger writing to stderr; quiet by default in tests. Each
 * line starts with its ISO time: `2026-01-02T03:04:05.678Z lifeboat info: msg {"field":…}`.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: LogLevel = (process.env['LIFEBOAT_LOG'] as LogLevel | undefined) ?? 'warn'): Logger {
  const min = ORDER[level] ?? ORDER.warn;
  const emit = (l: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[l] < min) return;
    const extra = fields && Object.keys(fields).length > 0 ? ' ' + JSON.stringify(fields) : '';
    // The real time even when LIFEBOAT_NOW pins the clock: a log says when things happened.
    process.stderr.write(`${systemClock.now().toISOString()} lifeboat ${l}: ${msg}${extra}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** A logger that adds `context` (session, disk, client…) to every line; a line's own fields win over it. */
export function withFields(logger: Logger, context: Record<string, unknown>): Logger {
  const merge = (f?: Record<string, unknown>): Record<string, unknown> => ({ ...context, ...f });
  return {
    debug: (m, f) => logger.debug(m, merge(f)),
    info: (m, f) => logger.info(m, merge(f)),
    warn: (m, f) => logger.warn(m, merge(f)),
    error: (m, f) => logger.error(m, merge(f)),
  };
}
