import { reapStaleClusters } from '../../src/local/cluster.js';

/** Clusters left by killed workers (this run or an earlier one) are stopped and removed. */
export function setup(): void {
  reapStaleClusters();
}

export function teardown(): void {
  reapStaleClusters();
}
