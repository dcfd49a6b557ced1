import { DeviceLostError, LimitExceededError, WebGPUUnavailableError } from './errors';

/** Limits a workload may ask for; values are minimums the adapter must reach. */
export type LimitNeeds = Partial<Record<
  | 'maxStorageBufferBindingSize'
  | 'maxBufferSize'
  | 'maxComputeWorkgroupStorageSize'
  | 'maxComputeInvocationsPerWorkgroup'
  | 'maxStorageBuffersPerShaderStage',
  number
>>;

/** Defaults every kernel in this library relies on (16 KiB tiles, 256 threads, 8 storage bindings). */
export const BASE_NEEDS: Required<LimitNeeds> = {
  maxStorageBufferBindingSize: 128 << 20,
  maxBufferSize: 256 << 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBuffersPerShaderStage: 8,
};

export interface DeviceOptions {
  /** Extra minimum limits for this workload (merged with BASE_NEEDS, larger wins). */
  needs?: LimitNeeds;
  /** Use this GPU object instead of navigator.gpu / Dawn (tests, embedding). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
}

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean };
  features: Set<string>;
  /** Resolves with a DeviceLostError if the device is lost; never rejects. */
  lost: Promise<DeviceLostError>;
}

// Dawn's GPU object must stay referenced for the whole process: when it was garbage collected mid-run
// the process segfaulted (SwiftShader) or hung (lavapipe) — TOOLCHAIN.md.
let nodeGpu: GPU | undefined;

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

async function findGpu(): Promise<GPU> {
  if (typeof navigator !== 'undefined' && (navigator as Navigator).gpu) return (navigator as Navigator).gpu;
  if (isNode) {
    if (!nodeGpu) {
      let mod: { create(flags: string[]): GPU; globals: Record<string, unknown> };
      try {
        mod = (await import(/* @vite-ignore */ 'webgpu')) as typeof mod;
      } catch (e) {
        throw new WebGPUUnavailableError(`the 'webgpu' package (Dawn for Node) could not be loaded: ${(e as Error).message}`);
      }
      // Dawn's classes (GPUBufferUsage, …) are needed as globals by code written for browsers.
      for (const [k, v] of Object.entries(mod.globals)) {
        if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
      }
      nodeGpu = mod.create([]);
    }
    return nodeGpu;
  }
  throw new WebGPUUnavailableError(
    'WebGPU is not available in this browser (navigator.gpu is missing). Use a recent Chrome/Edge, or Firefox/Safari with WebGPU enabled.',
  );
}

/** Request an adapter and a device with the limits the workload needs; fail early with a named limit. */
export async function acquireDevice(opts: DeviceOptions = {}): Promise<AcquiredDevice> {
  const gpu = opts.gpu ?? (await findGpu());
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    const hint = isNode
      ? ' In Node, Dawn needs a Vulkan driver; without a GPU set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (Debian chromium package).'
      : '';
    throw new WebGPUUnavailableError(`no WebGPU adapter was found.${hint}`);
  }
  const needs: Record<string, number> = { ...BASE_NEEDS };
  for (const [k, v] of Object.entries(opts.needs ?? {})) needs[k] = Math.max(needs[k] ?? 0, v ?? 0);
  const requiredLimits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (const [k, v] of Object.entries(needs)) {
    if (lim[k] < v) throw new LimitExceededError(k, v, lim[k]);
  }
  // Ask for the adapter's maximum of what large models need, not only the minimum: buffers grow with d_model.
  for (const k of [...Object.keys(BASE_NEEDS), 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension']) {
    requiredLimits[k] = lim[k];
  }
  const wanted: GPUFeatureName[] = ['shader-f16', 'timestamp-query', 'subgroups'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new WebGPUUnavailableError(`requestDevice failed: ${(e as Error).message}`);
  }
  const lost = device.lost.then((i) => new DeviceLostError(i.reason ?? 'unknown', i.message ?? ''));
  const ai = adapter.info ?? ({} as GPUAdapterInfo);
  const info = {
    vendor: ai.vendor ?? '',
    architecture: ai.architecture ?? '',
    device: ai.device ?? '',
    description: ai.description ?? '',
    isFallbackAdapter: Boolean((ai as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? (adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter),
  };
  return { device, adapter, info, features: new Set(device.features as unknown as Iterable<string>), lost };
}
