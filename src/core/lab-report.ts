/**
 * The shape of a SureBackup report's VMs and tests: written by the lab
 * (src/lab), recorded by the catalog (src/catalog), which do not depend on
 * each other.
 */

/** One test's outcome, as the report and `--json` show it. */
export interface LabTestResult {
  /** heartbeat, ping, tcp:<port>, http:<url>, script:<file>, verify, screenshot */
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
  readonly ms: number;
}

/** One VM of a SureBackup run. */
export interface LabVmReport {
  readonly job: string;
  /** The point it booted (a point id; the asked-for text, e.g. "latest", when no session started). */
  readonly point: string;
  readonly name: string;
  readonly ip: string;
  readonly booted: boolean;
  /** From the session's start to the heartbeat (or to the timeout). */
  readonly seconds: number;
  readonly tests: readonly LabTestResult[];
  /** PNG of the VM's screen at the end, when one could be taken: its path as the run wrote it. */
  readonly screenshot?: string;
}
