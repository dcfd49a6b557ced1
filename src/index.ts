// Public entry point of llm-surgeon-webgpu. Layers: gpu → kernels → model → surgeon → api; io beside.
export * from './gpu/index';
