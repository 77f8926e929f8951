/**
 * A worker thread's module: beside the calling module when running from source; dist/<name>.js in
 * the build, where the caller sits in dist/ or dist/chunks/ (scripts/build.ts makes each worker an
 * entry of its own).
 */
export function workerUrl(name: 'fetch-worker' | 'lz4-worker' | 'hash-worker', here: string): URL {
  if (here.endsWith('.ts')) return new URL(`./${name}.ts`, here);
  return new URL(here.includes('/chunks/') ? `../${name}.js` : `./${name}.js`, here);
}
