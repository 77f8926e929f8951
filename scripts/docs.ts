// Regenerate the README's settings table from src/config/settings.ts, the one declaration of every
// setting. `node scripts/docs.ts --check` exits 1 when the README is out of date (run by the tests).
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsMarkdown } from '../src/config/settings-doc.ts';

const path = new URL('../README.md', import.meta.url);
const readme = readFileSync(path, 'utf8');
const start = '<!-- settings-table -->';
const end = '<!-- /settings-table -->';
const from = readme.indexOf(start);
if (from < 0) throw new Error(`README.md lacks the ${start} marker`);
const to = readme.indexOf(end, from);
const updated = `${readme.slice(0, from)}${start}\n${settingsMarkdown()}\n${end}${to < 0 ? readme.slice(from + start.length) : readme.slice(to + end.length)}`;
if (process.argv.includes('--check')) {
  if (updated !== readme) {
    console.error('README.md settings table is out of date: run node scripts/docs.ts');
    process.exit(1);
  }
} else {
  writeFileSync(path, updated);
}
