import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** How the browser suites start Chromium (no sandbox: CI runs as root; no background traffic). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-background-networking'] as const;

const INSTALL_HINT = 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium';

/**
 * The Chromium binary the browser suites drive: `CHROMIUM_PATH`, else Debian's `chromium` on the
 * PATH (playwright-core downloads no browser of its own here). Missing: with `CI=true` this
 * throws, so the suite fails instead of skipping; locally it answers undefined after saying how
 * to install it, and the suite skips.
 */
export function chromiumExecutable(suite: string): string | undefined {
  const configured = process.env.CHROMIUM_PATH;
  const path =
    configured !== undefined && configured !== ''
      ? configured
      : ['chromium', 'chromium-browser'].map(onPath).find((p) => p !== undefined);
  if (path !== undefined && existsSync(path)) return path;
  const message = `${suite} needs Chromium and found none (CHROMIUM_PATH or chromium on the PATH). Install it: ${INSTALL_HINT}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`Skipping: ${message}`);
  return undefined;
}

/** Starts headless Chromium from `executablePath`; close it in `afterAll`. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_ARGS] });
}

function onPath(command: string): string | undefined {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path !== '' ? path : undefined;
}
