/**
 * Refusals the interactive mode can foresee, asked about before the final
 * confirmation instead of failing after it: tables without a row identity
 * (init and sync refuse to publish them, because UPDATE and DELETE on the
 * source would fail) and time filters on columns outside the replica identity
 * (the row filter cannot be published). The answers become the same options
 * the equivalent flags set (--set-replica-identity-full, --no-sync,
 * --exclude-tables), handed to the command through `wizardRunOptions` (outcome.ts).
 */
import { select } from '@inquirer/prompts';
import type { TableEntry } from '../../pipeline/list/index.js';
import { displayName } from '../../postgres/identifiers.js';
import type { CommandContext } from '../context.js';
import { setWizardRunOptions, type WizardKind, type WizardRunOptions } from './outcome.js';
import type { DatabaseChoices } from './plan.js';

interface PromptContext {
  signal: AbortSignal;
  output: NodeJS.WritableStream;
}

interface Picked {
  choices: DatabaseChoices;
  tables: TableEntry[];
}

const keyOf = (t: { schema: string; name: string }) => `${t.schema}\u0000${t.name}`;

/** Tables whose rows would be published (copied with rows, logged) in the choices. */
function streamed(p: Picked): TableEntry[] {
  const out = new Set([...p.choices.exclude, ...p.choices.schemaOnly].map(keyOf));
  return p.tables.filter((t) => !out.has(keyOf(t)) && !t.unlogged);
}

/** A row filter over these columns can be published without breaking UPDATE/DELETE on the source. */
function filterPublishable(t: TableEntry, column: string, fullIdentity: boolean): boolean {
  return t.replicaIdentity === 'full' || (fullIdentity && !t.replicaIdentityUsable) || t.replicaIdentityColumns.includes(column);
}

/**
 * Ask about what init or sync would refuse. Changes `picked` (tables left
 * out, filters dropped) and returns the extra flags of the equivalent command.
 */
export async function askAboutRefusals(
  ctx: CommandContext,
  kind: WizardKind,
  picked: Picked[],
  context: PromptContext,
): Promise<string[]> {
  if (kind === 'validate') return []; // validate reports these as failed checks; it has nothing to refuse
  const argv = ctx.argv as { setReplicaIdentityFull?: boolean; sync?: boolean };
  const opts: WizardRunOptions = {};
  const extra: string[] = [];
  const replicating = () => !(kind === 'init' && (argv.sync === false || opts.noSync));

  const keyless = picked.flatMap((p) => streamed(p).filter((t) => !t.replicaIdentityUsable).map((t) => ({ p, t })));
  if (keyless.length && replicating() && !argv.setReplicaIdentityFull) {
    const names = keyless.map(({ p, t }) => `${picked.length > 1 ? `${p.choices.database}: ` : ''}${displayName(t.schema, t.name)}`);
    const them = keyless.length === 1 ? 'it' : 'them';
    ctx.out.warn(
      `${keyless.length === 1 ? 'this table has' : `${keyless.length} tables have`} no primary key or replica identity: ${names.join(', ')}. ` +
        `Once published for replication, UPDATE and DELETE on ${them} would fail on the source, so ${kind} refuses ${them} as ${keyless.length === 1 ? 'it is' : 'they are'}.`,
    );
    const choices = [
      { name: `Set REPLICA IDENTITY FULL on ${them} (source and target) and replicate ${them} (--set-replica-identity-full)`, value: 'full' },
      { name: `Leave ${them} out (--exclude-tables)`, value: 'exclude' },
      ...(kind === 'init' ? [{ name: 'Copy everything once, without replication: no slot, no sync afterwards (--no-sync)', value: 'nosync' }] : []),
    ];
    const answer = await select({ message: `Tables without a row identity: what should ${kind} do?`, choices, default: 'full' }, context);
    if (answer === 'full') {
      opts.setReplicaIdentityFull = true;
      extra.push('--set-replica-identity-full');
    } else if (answer === 'nosync') {
      opts.noSync = true;
      extra.push('--no-sync');
    } else {
      for (const { p, t } of keyless) p.choices.exclude.push({ schema: t.schema, name: t.name });
    }
  }

  // Time filters whose column is outside the replica identity cannot be published.
  for (const p of picked) {
    for (const f of [...p.choices.timeFilters]) {
      const t = p.tables.find((x) => x.schema === f.schema && x.name === f.name);
      if (!t || !replicating() || filterPublishable(t, f.column, !!(argv.setReplicaIdentityFull || opts.setReplicaIdentityFull))) continue;
      const label = displayName(t.schema, t.name);
      ctx.out.warn(`${label}: ${f.column} is not part of the replica identity, so ${kind} cannot publish the time filter on it.`);
      const answer = await select(
        {
          message: `${label}: what should ${kind} do?`,
          choices: [
            { name: 'Copy all its rows (no time filter)', value: 'nofilter' },
            { name: 'Leave it out (--exclude-tables)', value: 'exclude' },
            ...(kind === 'init' ? [{ name: 'Copy everything once, without replication (--no-sync)', value: 'nosync' }] : []),
          ],
        },
        context,
      );
      if (answer === 'nosync') {
        opts.noSync = true;
        extra.push('--no-sync');
        continue;
      }
      p.choices.timeFilters = p.choices.timeFilters.filter((x) => x !== f);
      if (answer === 'exclude') p.choices.exclude.push({ schema: t.schema, name: t.name });
    }
  }
  setWizardRunOptions(ctx, opts);
  return extra;
}
