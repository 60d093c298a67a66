/** `name` and `name_details: { rate }`, the pair RabbitMQ uses for every counter it rates. */
export function withRate(out: Record<string, unknown>, name: string, value: number, rate: number): void {
  out[name] = value;
  out[`${name}_details`] = { rate };
}

export const ZERO_RATE = Object.freeze({ rate: 0 });
