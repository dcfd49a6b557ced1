/** The model-source part of the form: radio choice, Hub id, URL, file picker and drag-and-drop (files, a folder or a .zip). */

import type { ModelSourceSpec } from '../../src/api/types';

/** Models bundled in demo/public/models, by the value of their source radio; the first is the default. */
export const EMBEDDED_MODELS: Record<string, { url: string; label: string }> = {
  embedded: { url: 'models/opt-micro/', label: 'opt-micro (embedded)' },
  'embedded-llama': { url: 'models/llama-micro/', label: 'llama-micro (embedded)' },
};

/** The label of a bundled model's URL, if it is one. */
export const embeddedLabel = (url: string): string | undefined => Object.values(EMBEDDED_MODELS).find((m) => m.url === url)?.label;

type Entry = FileSystemEntry;

/** Files of a dropped folder, recursively, by base name (a checkpoint folder is flat; the loader finds files by name). */
async function filesOf(entry: Entry): Promise<File[]> {
  if (entry.isFile) return [await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej))];
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  const out: File[] = [];
  for (;;) {
    const batch = await new Promise<Entry[]>((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const e of batch) out.push(...(await filesOf(e)));
  }
  return out;
}

export class SourcePicker {
  private dropped: File[] = [];

  constructor(private readonly form: HTMLFormElement) {
    const drop = form.querySelector<HTMLElement>('#drop')!;
    const input = form.querySelector<HTMLInputElement>('#model-files')!;
    input.addEventListener('change', () => this.setFiles(Array.from(input.files ?? [])));
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', async (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const items = Array.from(e.dataTransfer?.items ?? []);
      const entries = items.map((i) => i.webkitGetAsEntry?.()).filter((x): x is Entry => !!x);
      const files = entries.length ? (await Promise.all(entries.map((en) => filesOf(en)))).flat() : Array.from(e.dataTransfer?.files ?? []);
      this.setFiles(files);
    });
    // Typing in a field selects its radio, so keyboard users need not do both.
    const pick = (v: string) => ((form.querySelector<HTMLInputElement>(`input[name=src][value=${v}]`)!).checked = true);
    form.querySelector('#hub-id')!.addEventListener('input', () => pick('hub'));
    form.querySelector('#model-url')!.addEventListener('input', () => pick('url'));
  }

  private setFiles(files: File[]): void {
    this.dropped = files;
    (this.form.querySelector<HTMLInputElement>('input[name=src][value=files]')!).checked = true;
    const list = this.form.querySelector('#drop-list')!;
    list.textContent = files.length ? `${files.length} file${files.length > 1 ? 's' : ''}: ${files.slice(0, 4).map((f) => f.name).join(', ')}${files.length > 4 ? ', …' : ''}` : '';
  }

  /** The chosen source, or a message saying what is missing. */
  spec(): ModelSourceSpec | string {
    const choice = (this.form.querySelector<HTMLInputElement>('input[name=src]:checked')!).value;
    switch (choice) {
      case 'hub': {
        const id = (this.form.querySelector<HTMLInputElement>('#hub-id')!).value.trim();
        return id ? { kind: 'hub', id } : 'Enter a Hugging Face model id, e.g. facebook/opt-125m.';
      }
      case 'url': {
        const url = (this.form.querySelector<HTMLInputElement>('#model-url')!).value.trim();
        return url ? { kind: 'url', url } : 'Enter the URL of a checkpoint folder.';
      }
      case 'files':
        if (!this.dropped.length) return 'Choose or drop the checkpoint files (or one .zip) first.';
        return { kind: 'files', files: this.dropped };
      default:
        return { kind: 'url', url: (EMBEDDED_MODELS[choice] ?? EMBEDDED_MODELS.embedded).url };
    }
  }
}
