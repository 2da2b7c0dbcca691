/**
 * The tables the registry's subnet book owns; {@link subnetMigrations} creates them. Same
 * conventions as the directory's tables (times in Unix ms, amounts as fixed-width text).
 */
import type { Money } from "@tessera/store";
import type { Int64Column, NullableInt64Column } from "../directory/tables.js";

/** A fee quote from EstimateSubnetFee, consumed by one CreateSubnet. */
export interface RegistryFeeQuoteTable {
  quote_id: string;
  gateway_address: string;
  network_fee: Money;
  fee_address: string;
  /** SHA3-256 hex of the quoted model set (order-insensitive). */
  models_digest: string;
  created_at_ms: Int64Column;
  expires_at_ms: Int64Column;
  /** The subnet that used the quote; null while unused. */
  used_by_subnet_id: NullableInt64Column;
}

/** A created subnet (the default subnet 0 is not stored: it always exists). */
export interface RegistrySubnetTable {
  subnet_id: Int64Column;
  gateway_address: string;
  /** SubnetStatus number. */
  status: number;
  payment_transfer_id: string;
  fee_quote_id: string;
  /** SHA3-256 hex of what the CreateSubnet request asked for, to tell a retry from a conflict. */
  request_digest: string;
  /** Base64 of the SubnetMetadata as created (status and times live in their columns). */
  metadata: string;
  created_at_ms: Int64Column;
  updated_at_ms: Int64Column;
}

/** Which models a subnet serves, for the ListSubnets model filter. */
export interface RegistrySubnetModelTable {
  subnet_id: Int64Column;
  model_id: string;
}

/** The last subnet id handed out; its one row ("subnet") is locked to allocate the next id. */
export interface RegistrySubnetCounterTable {
  name: string;
  last_id: Int64Column;
}

/** The subnet book's tables. */
export interface SubnetTables {
  registry_fee_quote: RegistryFeeQuoteTable;
  registry_subnet: RegistrySubnetTable;
  registry_subnet_counter: RegistrySubnetCounterTable;
  registry_subnet_model: RegistrySubnetModelTable;
}
