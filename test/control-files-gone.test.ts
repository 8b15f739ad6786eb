/**
 * POST /files/copy of the control API when the CLI goes away (Ctrl-C) while
 * the server is still preparing the copy (the appliance boots for 12-30 s):
 * the copy is cancelled once it exists, so its tar ends and the session's
 * lease is released. Before, the response's close had come before anyone
 * listened, the tar stayed paused on a pipe nobody read, and the session
 * could never close or be evicted. In process, over loopback HTTP; no root.
 */
import { test } from 'node:test';
import { createServer, request } from 'node:http';
import { PassThrough } from 'node:stream';
import { handleFilesRoute, type ControlFiles, type FilesCopy } from '../src/app/control-files.js';
import { until } from './helpers.js';

test('a CLI that goes away while the server prepares its copy cancels the copy once it is made', async () => {
  let release: () => void = () => undefined;
  const prepared = new Promise<void>((r) => (release = r));
  let cancelled = false;
  const files: ControlFiles = {
    ls: () => Promise.reject(new Error('not used')),
    find: () => Promise.reject(new Error('not used')),
    async copy(): Promise<FilesCopy> {
      await prepared;
      const stream = new PassThrough();
      // A tar that has more to send than any socket buffer holds, and ends only when cancelled.
      stream.write(Buffer.alloc(4 * 1024 * 1024));
      let end: () => void = () => undefined;
      const done = new Promise<void>((r) => (end = r));
      return {
        pointId: 'p',
        source: '/etc',
        type: 'directory',
        entry: 'etc',
        stream,
        done,
        cancel: () => {
          cancelled = true;
          stream.destroy();
          end();
        },
      };
    },
  };
  const server = createServer((req, res) => {
    void handleFilesRoute(
      req,
      res,
      '/files/copy',
      files,
      () => Promise.resolve(JSON.stringify({ job: 'vm', point: 'latest', path: '/etc' })),
      (status, body) => res.writeHead(status).end(JSON.stringify(body)),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/files/copy' });
    req.on('error', () => undefined);
    req.end('{}');
    // The CLI is gone before the copy exists.
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    await new Promise((r) => setTimeout(r, 200));
    release();
    await until('the copy to be cancelled', async () => (cancelled ? true : undefined), 5000);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
