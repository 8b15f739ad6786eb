import { execFileSync } from 'node:child_process';
import { copyFileSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/**
 * Builds a realistic VM disk image: an ext4 filesystem of `imageBytes` holding
 * about `dataBytes` of real OS files (copied from /usr), the rest free space.
 * Uses mkfs.ext4 -d, so no mount (and no root) is needed.
 */
export function buildSampleImage(
  image: string,
  imageBytes: number,
  dataBytes: number,
  roots = ['/usr/lib', '/usr/share', '/usr/bin'],
): { files: number; bytes: number } {
  const staging = `${image}.staging`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  let bytes = 0;
  let files = 0;
  const visit = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const n of names) {
      if (bytes >= dataBytes) return;
      const p = join(dir, n);
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) visit(p);
      else if (st.isFile() && st.size > 0 && st.size < 64 * 1024 * 1024) {
        const to = join(staging, relative('/', p));
        try {
          mkdirSync(dirname(to), { recursive: true });
          copyFileSync(p, to);
        } catch {
          continue;
        }
        bytes += st.size;
        files += 1;
      }
    }
  };
  for (const r of roots) visit(r);
  rmSync(image, { force: true });
  execFileSync('mkfs.ext4', ['-q', '-F', '-i', '8192', '-d', staging, image, `${Math.floor(imageBytes / 1024 / 1024)}M`], { stdio: 'inherit' });
  rmSync(staging, { recursive: true, force: true });
  return { files, bytes };
}
