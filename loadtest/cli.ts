import { HelpRequested, parseOptions, USAGE } from './options.js';
import { runLoadtest, summaryText } from './run.js';

/**
 * `npm run loadtest -- [options]` (see `--help` and loadtest/README.md). Exit status: 0 when the run
 * completed (and `--verify` passed, if asked), 1 on a setup error or a failed verify.
 */
async function main(): Promise<number> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(USAGE);
      return 0;
    }
    process.stderr.write(`loadtest: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const report = await runLoadtest(options);
  process.stdout.write(`${summaryText(report)}\n`);
  return report.verify && !report.verify.ok ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `loadtest: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
