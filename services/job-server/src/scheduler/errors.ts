/**
 * Bad input to the scheduler: a node or job description that cannot be scheduled as given
 * (a price that is not a decimal amount, a reputation outside [0, 1], ...). The job server maps
 * it to INVALID_ARGUMENT naming `field`.
 */
export class SchedulerInputError extends Error {
  /** The offending field, in the proto's snake_case where it comes from one ("payment_amount"). */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "SchedulerInputError";
    this.field = field;
  }
}
