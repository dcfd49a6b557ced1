// Compaction: physically smaller models from a structured result (pure bookkeeping, no GPU).
export { planCompaction, type CompactPlan, type LayerPlan } from './plan';
export { compactModel, compactConfigRaw, stockDims, type CompactModel } from './apply';
export { COMPACT_KEY } from '../arch/parse';
