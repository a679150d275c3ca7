// Headless Chromium for the web page tests: Debian's `chromium` (scripts/test.sh installs it)
// driven by playwright-core, which brings no browser of its own.
import { existsSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';

export const CHROMIUM = process.env.RELAY_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or false. */
export const chromiumMissing: string | false = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: scripts/test.sh installs Debian's chromium, or set RELAY_CHROMIUM`;

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  // --no-sandbox: tests run as root in CI containers, where Chromium's sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
}

/**
 * How much is drawn in a screenshot: Chromium decodes the PNG and counts its distinct colours
 * and the share of pixels that differ from the most common one (the background).
 */
export async function screenshotInk(page: Page, png: Buffer): Promise<{ width: number; height: number; colours: number; inkShare: number }> {
  return page.evaluate(async (b64: string) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext('2d')!;
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const counts = new Map<number, number>();
    for (let i = 0; i < d.length; i += 4) {
      const k = (d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    const pixels = d.length / 4;
    const background = Math.max(...counts.values());
    return { width: c.width, height: c.height, colours: counts.size, inkShare: (pixels - background) / pixels };
  }, png.toString('base64'));
}
