/** pgferry validate: preflight checks as a plain function (init and demo call it too). */
export { runValidate, exitCodeFor, summarise } from './run.js';
export type { CheckResult, CheckSide, CheckStatus, DatabaseReport, ValidateOptions, ValidateReport, ValidateSummary } from './types.js';
export { CHECK_SIDES, CHECK_STATUSES } from './types.js';
export { DEFAULT_MAX_TRANSACTION_AGE_SECONDS } from './long-transactions.js';
