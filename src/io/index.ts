// io layer: checkpoints (safetensors, config, sources), tokenizer, text. Sits beside gpu/; imports neither gpu/ nor upper layers.
export * from './errors';
export * from './dtype';
export * from './safetensors';
export * from './config';
export { openSource, hubUrl, zipFolder, type Folder, type ModelSource, type OpenOptions, type ProgressFn } from './sources';
export { loadCheckpoint, assertFiniteWeights, type LoadedCheckpoint, type LoadOptions } from './checkpoint';
export * from './tokenizer';
export * from './wikitext';
export { checkTokenIds, parseTokenIdsJson } from './ids';
export { buildHfFolder, exportHfFolder, checkExportRange, findOverflow, stageFolder, configDType, roundTo, DTYPE_MAX, EXPORT_DTYPES, TOKENIZER_FILES, type ExportDType, type ExportOptions, type ExportedFolder, type CompactionSummary, type Overflow, type StagedFolder } from './export';
