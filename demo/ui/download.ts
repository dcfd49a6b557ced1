/** Hand zip bytes to the browser as a download named after the model. */
export function downloadZip(zip: Uint8Array, label: string, suffix: string): void {
  const url = URL.createObjectURL(new Blob([zip as BlobPart], { type: 'application/zip' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: `${label.replace(/[^\w.-]+/g, '_')}-${suffix}.zip` });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000); // the download has started long before
}
