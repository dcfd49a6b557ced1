/**
 * `llm-surgeon <eval|prune|help|version> …` — the Node entry point (bundled to dist-node/cli.mjs,
 * package.json "bin"). Dawn comes from the `webgpu` package; without a GPU driver set
 * VK_ICD_FILENAMES to SwiftShader's ICD (TOOLCHAIN.md). main() returns the exit code; the module runs
 * it only when it is the process's entry script, so tests can import it.
 */

import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { version } from '../../package.json';
import { evalCommand } from './eval';
import { pruneCommand } from './prune';

const USAGE = `llm-surgeon ${version} — LLM Surgeon pruning (ICLR 2024) on WebGPU
usage: llm-surgeon <command> [options]
  prune     prune a checkpoint (OPT, Llama, Mistral, Qwen2; safetensors) into a Hugging Face folder + report.json
  eval      perplexity of a checkpoint (OPT, Llama, Mistral, Qwen2; safetensors; ALGORITHM.md §10)
  help      this text (llm-surgeon <command> --help for a command's options)
  version   print the version
Without a GPU driver, set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (software GPU).`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'prune': return pruneCommand(rest);
    case 'eval': return evalCommand(rest);
    case undefined: case 'help': case '-h': case '--help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'version': case '-v': case '--version':
      process.stdout.write(`${version}\n`);
      return 0;
    default:
      process.stderr.write(`llm-surgeon: unknown command '${cmd}'\n${USAGE}\n`);
      return 2;
  }
}

function isEntry(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`llm-surgeon: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
