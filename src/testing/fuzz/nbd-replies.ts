/**
 * The oracle for unmutated NBD sessions: everything the client sent is
 * well-formed, so the server's byte stream can be checked against the NBD
 * protocol (NetworkBlockDevice doc/proto.md): the greeting, a run of replies
 * for each option ending in ACK or an error, the export's size after
 * NBD_OPT_EXPORT_NAME, then exactly one final reply per command, matched by
 * cookie, when the client ended with NBD_CMD_DISC.
 */
import * as W from '../../nbd/wire.js';

interface Command {
  readonly type: number;
  readonly length: number;
}

interface ClientSession {
  readonly noZeroes: boolean;
  readonly options: readonly number[];
  readonly structured: boolean;
  readonly commands: ReadonlyMap<string, Command>;
  readonly disconnected: boolean;
  readonly duplicateCookies: boolean;
}

/** What a well-formed client stream asked for (undefined if it is not well-formed). */
function parseClient(input: Buffer): ClientSession | undefined {
  if (input.length < 4) return undefined;
  const noZeroes = (input.readUInt32BE(0) & W.NBD_FLAG_C_NO_ZEROES) !== 0;
  const options: number[] = [];
  let structured = false;
  let at = 4;
  for (;;) {
    if (at + 16 > input.length || input.readBigUInt64BE(at) !== W.IHAVEOPT) return undefined;
    const opt = input.readUInt32BE(at + 8);
    at += 16 + input.readUInt32BE(at + 12);
    options.push(opt);
    if (opt === W.NBD_OPT_STRUCTURED_REPLY) structured = true;
    if (opt === W.NBD_OPT_ABORT) return { noZeroes, options, structured, commands: new Map(), disconnected: true, duplicateCookies: false };
    if (opt === W.NBD_OPT_GO || opt === W.NBD_OPT_EXPORT_NAME) break;
  }
  const commands = new Map<string, Command>();
  let duplicateCookies = false;
  let disconnected = false;
  while (at + 28 <= input.length) {
    const type = input.readUInt16BE(at + 6);
    const length = input.readUInt32BE(at + 24);
    const cookie = input.subarray(at + 8, at + 16).toString('hex');
    at += 28 + (type === W.NBD_CMD_WRITE ? length : 0);
    if (type === W.NBD_CMD_DISC) {
      disconnected = true;
      break;
    }
    if (commands.has(cookie)) duplicateCookies = true;
    commands.set(cookie, { type, length });
  }
  return { noZeroes, options, structured, commands, disconnected, duplicateCookies };
}

/** A protocol violation in the server's reply to a valid session, or undefined. */
export function checkValidSession(input: Buffer, output: Buffer): string | undefined {
  const client = parseClient(input);
  if (!client) return undefined;
  let at = 18; // NBDMAGIC, IHAVEOPT, handshake flags
  const need = (n: number, what: string): string | undefined => (at + n > output.length ? `the server stopped before ${what}` : undefined);
  for (const opt of client.options) {
    if (opt === W.NBD_OPT_EXPORT_NAME) {
      const size = client.noZeroes ? 10 : 134;
      const short = need(size, 'the export size');
      if (short) return short;
      at += size;
      break;
    }
    for (;;) {
      const short = need(20, `the reply to option ${opt}`);
      if (short) return short;
      if (output.readBigUInt64BE(at) !== W.REPLY_MAGIC) return `option ${opt}: reply magic ${output.subarray(at, at + 8).toString('hex')}`;
      if (output.readUInt32BE(at + 8) !== opt) return `option ${opt} answered as option ${output.readUInt32BE(at + 8)}`;
      const type = output.readUInt32BE(at + 12);
      at += 20 + output.readUInt32BE(at + 16);
      if (type === W.NBD_REP_ACK || type >= 0x80000000) break;
    }
  }
  if (!client.disconnected || client.duplicateCookies) return undefined;
  const open = new Map(client.commands);
  while (at < output.length) {
    const short = need(16, 'a whole reply header');
    if (short) return short;
    const magic = output.readUInt32BE(at);
    const cookie = output.subarray(at + 8, at + 16).toString('hex');
    const cmd = open.get(cookie);
    if (!cmd) return `a reply for cookie ${cookie}, which no open request has`;
    if (magic === W.NBD_SIMPLE_REPLY_MAGIC) {
      const error = output.readUInt32BE(at + 4);
      at += 16 + (cmd.type === W.NBD_CMD_READ && error === 0 ? cmd.length : 0);
      open.delete(cookie);
    } else if (magic === W.NBD_STRUCTURED_REPLY_MAGIC && client.structured) {
      const more = need(20, 'a whole chunk header');
      if (more) return more;
      const done = (output.readUInt16BE(at + 4) & W.NBD_REPLY_FLAG_DONE) !== 0;
      at += 20 + output.readUInt32BE(at + 16);
      if (done) open.delete(cookie);
    } else return `reply magic ${magic.toString(16)}${client.structured ? '' : ' (structured replies were not negotiated)'}`;
  }
  if (at > output.length) return 'the last reply is cut short';
  if (open.size > 0) return `${open.size} of ${client.commands.size} requests got no reply before the server closed after NBD_CMD_DISC`;
  return undefined;
}
