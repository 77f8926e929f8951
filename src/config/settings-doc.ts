import { configEnv, defaultConfigPath, settings } from './settings.ts';

/** The settings as a Markdown table, for the README (kept in sync by scripts/docs.ts). */
export function settingsMarkdown(): string {
  const rows = Object.entries(settings).map(([key, s]) => `| \`${s.env}\` | \`${key}\` | ${s.doc.replace(/\|/g, '\\|')} |`);
  return [
    `Config file: \`--config FILE\`, \`${configEnv}\`, or \`${defaultConfigPath}\`.`,
    '',
    '| environment variable | config key | meaning |',
    '|---|---|---|',
    ...rows,
  ].join('\n');
}
