import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { it } from 'node:test';

const root = resolve(import.meta.dirname, '../..');

/** Which cloud SDK packages a script resolves, as module URLs seen by a resolve hook. */
function sdkModulesLoaded(body: string): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
    const { openStorage } = await import(${JSON.stringify(join(root, 'src/storage/open.ts'))});
    const { parseStorageUrl } = await import(${JSON.stringify(join(root, 'src/config/storage-url.ts'))});
    ${body}
    console.log(JSON.stringify(seen.filter((u) => /@aws-sdk|@smithy|@google-cloud|@azure/.test(u))));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, AZURE_STORAGE_CONNECTION_STRING: 'AccountName=a;AccountKey=eA==' } });
  return JSON.parse(out.trim().split('\n').pop()!);
}

it('opening and using a file:// repository loads no cloud SDK', () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-lazy-'));
  const loaded = sdkModulesLoaded(`
    const s = await openStorage(parseStorageUrl('file://${dir}'), { timeoutSeconds: 5 });
    await s.put('wal/000000010000000000000001', Buffer.from('x'), { ifAbsent: true });
    await s.head('wal/000000010000000000000001');
  `);
  assert.deepEqual(loaded, []);
});

it('each cloud scheme loads only its own SDK', () => {
  const s3 = sdkModulesLoaded(`await openStorage(parseStorageUrl('s3://b/p?region=us-east-1'), { timeoutSeconds: 5 });`);
  assert.ok(s3.some((u) => u.includes('@aws-sdk/client-s3')));
  assert.ok(!s3.some((u) => /@google-cloud|@azure/.test(u)));
  const az = sdkModulesLoaded(`await openStorage(parseStorageUrl('azure://c/p'), { timeoutSeconds: 5 });`);
  assert.ok(az.some((u) => u.includes('@azure/storage-blob')));
  assert.ok(!az.some((u) => /@google-cloud|@aws-sdk/.test(u)));
});
